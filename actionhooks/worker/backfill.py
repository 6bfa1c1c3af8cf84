"""Backfill: deliver a hook the archived events of an interval that its current filters select.

A job runs as its own task in bounded slices: each slice reads up to SLICE_EVENTS archived events
from the job's cursor, keeps those the hook's compiled matcher selects (`CompiledHook.matches`, the
live router's rule), renders them with the router's own code (`hooks/rendering.render_matched`: the hook's
current custom_data, profiles, catalog names, content) and inserts them as delivery batches — the
rows live batches are, so the drain sends them with retries, the failed list and replay, with each
event's original `event_id`. The batches, the cursor and the counters commit together, so a worker
killed mid-slice repeats nothing and loses nothing: the scheduler retriggers the job and it
resumes from the cursor.

Fairness: a task works for at most SLICE_BUDGET_SEC, then sends itself to the back of the queue,
so routing and draining of other hooks wait at most one slice for a worker. Backpressure: a job
makes new batches only while fewer than MAX_OUTSTANDING_BATCHES of its hook's backfill batches
wait to be sent, so a slow receiver slows the job instead of filling the deliveries table.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from actionhooks.hooks.matching import CompiledHook
from actionhooks.hooks.rendering import render_matched
from actionhooks.storage import archive, backfills, deliveries
from actionhooks.storage.hooks import lock_existing
from actionhooks.worker import shutdown
from actionhooks.worker.batching import batch_limits

if TYPE_CHECKING:
    from actionhooks.worker.runtime import Runtime

log = logging.getLogger(__name__)

SLICE_EVENTS = 2000
SLICE_BUDGET_SEC = 0.5
LEASE_SEC = 15.0
MAX_OUTSTANDING_BATCHES = 20
THROTTLED_RETRY_SEC = 0.5


def run_backfill(rt: Runtime, job_id: int) -> int:
    """Advance one job for up to SLICE_BUDGET_SEC; returns the number of archived events scanned."""
    with rt.sessions() as session:
        job = backfills.claim(session, job_id, time.time(), LEASE_SEC)
        session.commit()
        if job is None:
            return 0
        session.expunge(job)
    scanned = 0
    deadline = time.monotonic() + SLICE_BUDGET_SEC
    while True:
        with rt.sessions() as session:
            step = _slice(rt, session, job)
        if step is None:  # finished, failed or cancelled: nothing to continue
            return scanned
        scanned += step
        if step == 0 or time.monotonic() >= deadline or shutdown.requested():
            break
    with rt.sessions() as session:
        backfills.release(session, job.id)
        session.commit()
    # To the back of the queue: whatever other hooks queued meanwhile runs first.
    rt.triggers.backfill(job.id, countdown=THROTTLED_RETRY_SEC if step == 0 else None)
    return scanned


def allowance(hook: CompiledHook, waiting: int) -> bool:
    """Whether the job may make more batches for `hook` now, `waiting` of its backfill batches being unsent.

    Backpressure only: the hook's rate limit needs nothing here, since backfill batches are sent by
    the hook's own drains, whose claim takes their events from the hook's one budget
    (worker/control.py) as it does live events'.
    """
    return waiting < MAX_OUTSTANDING_BATCHES


def _slice(rt: Runtime, session: Session, job: Any) -> int | None:
    """One slice in one transaction: events scanned (0 = throttled), or None when the job ended."""
    now = time.time()
    rt.hooks.refresh(force=True)  # the hook's current filters and custom_data
    hook = rt.hooks.get(job.hook_id)
    if hook is None or not hook.active:
        backfills.fail(session, job.id, "the hook was stopped" if hook else "the hook cannot be loaded", now)
        session.commit()
        return None
    # The pipeline's lock order before writing the hook's batches (storage/hooks.lock_existing): a
    # DELETE of the hook waits for this slice, or this slice sees the hook (and the job) gone.
    if not lock_existing(session, [hook.id]):
        return None
    waiting = backfills.outstanding_batches(session, hook.id)
    if not allowance(hook, waiting):
        return 0
    cursor = (job.cursor_at, job.cursor_id) if job.cursor_at is not None else None
    found = archive.read_slice(session, job.account_id, job.from_at, job.to_at, after=cursor, max_events=SLICE_EVENTS)
    if found.last is None:
        following = backfills.finish_scan(session, job, now)
        session.commit()
        rt.triggers.drain(hook.id)
        if following is not None:
            rt.triggers.backfill(following)
        return None
    matched = [event for event in found.events if hook.matches(event)]
    batches = _make_batches(rt, session, hook, matched, now) if matched else []
    recorded = backfills.record_slice(
        session, job, cursor=found.last, scanned=len(found.events), matched=len(matched), batches=batches,
        now=now, lease_sec=LEASE_SEC,
    )
    if not recorded:  # cancelled meanwhile: none of this slice's batches
        session.rollback()
        return None
    session.commit()
    job.cursor_at, job.cursor_id = found.last
    if batches and not waiting:
        # Only when no earlier batch waits: a drain sending those goes on to these, and a drain
        # trigger per slice would pile drain tasks of this hook onto every worker (each holds one for
        # its whole time budget), which is what delays other hooks. A lost drain: the scheduler.
        rt.triggers.drain(hook.id)
    return len(found.events)


def _make_batches(
    rt: Runtime, session: Session, hook: CompiledHook, matched: list[dict[str, Any]], now: float
) -> list[tuple[str, int]]:
    """Render and insert the slice's batches (full batches at once: there is no window to wait for);
    returns (delivery id, events) of each."""
    size = batch_limits(hook)[0]
    rows: list[dict[str, Any]] = []
    for _, rendered, broken in render_matched(
        session, rt.settings, hook.account_id, [hook], {hook.id: matched}, contents={}, now=now
    ):
        rows.extend(
            deliveries.new_batch(hook.id, hook.account_id, rendered[i : i + size], now)
            for i in range(0, len(rendered), size)
        )
        if broken:
            rows.append(broken)
    deliveries.add(session, rows)
    return [(row["id"], row["n_events"]) for row in rows]
