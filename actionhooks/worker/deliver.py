"""Draining a hook: cut ready batches, claim due ones, make one attempt each, record the outcome.

Phases (after outpost):
- claim: in one transaction, the attempt counter is incremented, an attempt row written and a lease
  taken *before* anything is sent, so a worker killed mid-send has used up that attempt and can
  never make a batch retry forever; when the lease passes, the batch is due again.
- attempt: `Transport.send`, outside any transaction, within the attempt's one deadline
  (HOOK_HTTP_TIMEOUT_SEC for everything: connect, TLS, sending, waiting for and reading the answer).
  The drain's batches go out on sending threads of its own, so no batch waits behind another
  drain's: the lease (SENDS_PER_THREAD deadlines + LEASE_MARGIN_SEC) outlasts every send of a live
  worker, and no batch is handed to a second worker while the first still sends it.
- record: success deletes the batch; a failure asks the retry policy for the delay, and either
  schedules the next attempt in the database (never as a Celery ETA: long delays would sit in the
  broker and Redis would redeliver them) or moves the batch to the failed list.

Every transaction that writes the hook's batches or attempts first locks the hook row KEY SHARE
(storage/hooks.lock_existing): the same order as DELETE /hooks/{id}, which locks the hook and then
cascades to its rows, so a delete and a drain wait for each other instead of deadlocking. A hook
deleted meanwhile ends the drain; an outcome it can no longer record went with the hook.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from actionhooks import tracing
from actionhooks.delivery import Batch, Receipt, attempt
from actionhooks.delivery.config import redact
from actionhooks.errors import DeliveryError
from actionhooks.hooks.matching import CompiledHook
from actionhooks.storage import stats
from actionhooks.storage.hooks import lock_existing
from actionhooks.storage.intake import stage
from actionhooks.storage.tables import Attempt, Delivery
from actionhooks.worker import control, shutdown
from actionhooks.worker.batching import form_batches

if TYPE_CHECKING:
    from actionhooks.worker.runtime import Runtime

DRAIN_TIME_BUDGET_SEC = 10.0
# Batches each sending thread gets per claim round: the round's claim and record statements are
# shared by all of them, so two per thread halve that bookkeeping per event (measured in the commit).
SENDS_PER_THREAD = 2
# What a lease leaves after the sends' deadlines: recording the round (one transaction).
LEASE_MARGIN_SEC = 5.0
ERROR_TEXT_LIMIT = 2000

log = logging.getLogger(__name__)


@dataclass
class Claimed:
    delivery_id: str
    attempt: int
    attempt_row: int
    events: list[dict[str, Any]]
    accepted_at: float | None = None  # acceptance of the oldest event (the latency histogram)
    trace_context: str | None = None  # the routing span that formed the batch (tracing.py)


@dataclass
class Outcome:
    claimed: Claimed
    receipt: Receipt | None
    error: DeliveryError | None


def lease_seconds(rt: Runtime, hook: CompiledHook) -> float:
    """How long a claimed batch stays hidden: longer than the attempts one sending thread makes in a
    round (SENDS_PER_THREAD, one after the other, each cut at HOOK_HTTP_TIMEOUT_SEC whatever the
    receiver does), plus the time to record them."""
    return rt.settings.HOOK_HTTP_TIMEOUT_SEC * SENDS_PER_THREAD + LEASE_MARGIN_SEC


def drain_hook(rt: Runtime, hook_id: int) -> int:
    """Deliver what is due for one hook within a time budget; returns the number of attempts made."""
    rt.hooks.refresh()
    hook = rt.hooks.get(hook_id)
    if hook is None:
        return 0  # deleted (its work went with it) or not compilable (logged by the cache)
    with rt.sessions() as session:
        if not lock_existing(session, [hook_id]):
            return 0  # deleted since the cache saw it: its work went with it
        form_batches(session, hook, [])  # closes a batch window that is due (timed flush)
        session.commit()
    parallel = rt.send_parallelism(hook)
    # This drain's own sending threads (started on first use, ended with the drain): a shared pool
    # would make batches wait in line behind other drains' while their lease runs.
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="actionhooks-send") as senders:
        attempts, done = _drain_rounds(rt, hook, parallel, senders)
    if not done:
        rt.triggers.drain(hook_id)  # budget used up (or stopping): continue in a fresh task
    return attempts


def _drain_rounds(rt: Runtime, hook: CompiledHook, parallel: int, senders: ThreadPoolExecutor) -> tuple[int, bool]:
    """Claim, attempt and record rounds until nothing is due (done) or the budget is used up."""
    attempts = 0
    deadline = time.monotonic() + DRAIN_TIME_BUDGET_SEC
    while time.monotonic() < deadline and not shutdown.requested():
        notices: list[dict[str, Any]] = []
        with rt.sessions() as session:
            claimed, gate = claim_round(session, rt, hook, parallel * SENDS_PER_THREAD, notices)
            raised = _capture(rt, session, hook, notices)
            session.commit()
        _after_commit(rt, hook, raised, gate)
        if not claimed:
            return attempts, True
        outcomes = run_attempts(rt, hook, claimed, senders)
        notices = []
        with rt.sessions() as session:
            if not lock_existing(session, [hook.id]):
                return attempts, True  # deleted while sending: its batches and attempts went with it
            record(session, rt, hook, outcomes, gate=gate, notices=notices)
            raised = _capture(rt, session, hook, notices)
            session.commit()
        _after_commit(rt, hook, raised, None)
        attempts += len(claimed)
    return attempts, False


def _capture(rt: Runtime, session: Session, hook: CompiledHook, notices: list[dict[str, Any]]) -> bool:
    """Capture operational events into the account's intake, in the caller's transaction."""
    if not notices:
        return False
    archive = rt.settings.EVENT_ARCHIVE_HOURS > 0
    return stage(session, hook.account_id, orjson.dumps(notices), len(notices), time.time(), archive=archive)


def _after_commit(rt: Runtime, hook: CompiledHook, route: bool, gate: control.Gate | None) -> None:
    if route:
        rt.triggers.route(hook.account_id)
    if gate is not None and gate.wake_in is not None:
        rt.triggers.drain(hook.id, countdown=gate.wake_in)  # beyond MAX_COUNTDOWN_SEC: the scheduler


def claim_due(session: Session, rt: Runtime, hook: CompiledHook, limit: int) -> list[Claimed]:
    """`claim_round` for callers that only want the batches."""
    return claim_round(session, rt, hook, limit, [])[0]


def claim_round(
    session: Session, rt: Runtime, hook: CompiledHook, limit: int, notices: list[dict[str, Any]]
) -> tuple[list[Claimed], control.Gate | None]:
    """Claim up to `limit` due batches with a fixed number of statements, whatever `limit` is: a
    statement costs about as much as sending a batch of 100 events, so per-batch statements would
    make the bookkeeping dearer than the delivery. Nothing when the hook was deleted, paused between
    probes, stopped as gone, or out of rate budget (worker/control.py: then the gate says when to
    come back)."""
    if not lock_existing(session, [hook.id]):
        return [], None
    now = time.time()
    gate = control.admit(session, rt.settings, hook, now)
    if gate.closed:
        return [], gate
    if gate.max_batches is not None:
        limit = min(limit, gate.max_batches)
    stmt = (
        select(
            Delivery.id, Delivery.attempts, Delivery.events, Delivery.accepted_at, Delivery.trace_context,
            Delivery.n_events,
        )
        .where(
            Delivery.hook_id == hook.id,
            Delivery.status == "pending",
            Delivery.next_attempt_at <= now,
            Delivery.lease_until <= now,
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = session.execute(stmt).all()
    if gate.max_batches == 1 and not rows:  # a paused hook with nothing to probe with: probe when there is
        gate.state.next_probe_at = gate.state.hold_until = now
        gate.wake_in = None
    rows = rows[: control.take(gate, hook, [row.n_events for row in rows], now)]
    if not rows:
        return [], gate
    retried = [row.id for row in rows if row.attempts > 0]
    if retried and (lost := _close_lost_attempts(session, retried)):
        tally = stats.Tally()
        tally.attempt(hook.delivery.type, "lost", lost)
        stats.add(session, tally)
    due = []
    origins = {}
    for delivery_id, attempts, blob, accepted_at, trace_context, _ in rows:
        events = orjson.loads(blob)
        if attempts >= rt.policy.max_attempts:
            _fail(session, hook, delivery_id, events, f"worker lost during attempt {attempts} (the last allowed)",
                  now=now, notices=notices)
        else:
            due.append((delivery_id, attempts + 1, events))
            origins[delivery_id] = (accepted_at, trace_context)
    if not due:
        return [], gate
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_([delivery_id for delivery_id, _, _ in due]))
        .values(attempts=Delivery.attempts + 1, lease_until=now + lease_seconds(rt, hook))
    )
    attempt_ids = session.scalars(
        insert(Attempt).returning(Attempt.id, sort_by_parameter_order=True),
        [
            {"hook_id": hook.id, "delivery_id": delivery_id, "attempt": attempt, "started_at": now,
             "n_events": len(events)}
            for delivery_id, attempt, events in due
        ],
    ).all()
    return [
        Claimed(delivery_id, attempt, row, events, *origins[delivery_id])
        for (delivery_id, attempt, events), row in zip(due, attempt_ids, strict=True)
    ], gate


def _close_lost_attempts(session: Session, delivery_ids: list[str]) -> int:
    """An attempt still 'started' when its batch is claimed again was cut short by a dead worker; how many."""
    result = session.execute(
        update(Attempt)
        .where(Attempt.delivery_id.in_(delivery_ids), Attempt.outcome == "started")
        .values(outcome="error", error="worker lost during the attempt")
    )
    return int(result.rowcount or 0)


def run_attempts(
    rt: Runtime, hook: CompiledHook, claimed: list[Claimed], senders: ThreadPoolExecutor
) -> list[Outcome]:
    """One attempt per claimed batch on `senders`; the hook's transport stays open until all ended."""
    with rt.transports.using(hook) as transport:

        def one(c: Claimed) -> Outcome:
            batch = Batch(hook_id=hook.id, batch_id=c.delivery_id, attempt=c.attempt, events=c.events)
            with tracing.span("actionhooks.deliver", links=[c.trace_context], hook_id=hook.id,
                              batch_id=c.delivery_id, attempt=c.attempt, transport=hook.delivery.type,
                              events=len(c.events)) as span:
                try:
                    return Outcome(c, attempt(transport, batch), None)
                except DeliveryError as exc:
                    span.fail(f"{type(exc).__name__}: {exc.message}")
                    return Outcome(c, None, exc)

        if len(claimed) == 1:
            return [one(claimed[0])]
        return list(senders.map(one, claimed))


def record(
    session: Session,
    rt: Runtime,
    hook: CompiledHook,
    outcomes: list[Outcome],
    *,
    gate: control.Gate | None = None,
    notices: list[dict[str, Any]] | None = None,
) -> None:
    """Record the outcomes of one round; successes (the common case) in two statements for all, and the
    round's totals for /metrics in one more (storage/stats.py).

    The hook's pause/gone state is settled first (worker/control.py, its row locked before the
    batches, the claim's order): a failure of a paused or gone hook is handed back, not counted."""
    notices = [] if notices is None else notices
    now = time.time()
    tally = stats.Tally()
    transport = hook.delivery.type
    for o in outcomes:
        tally.attempt(transport, "ok" if o.error is None else "error")
        if o.error is None:
            latency = None if o.claimed.accepted_at is None else now - o.claimed.accepted_at
            tally.delivered(transport, len(o.claimed.events), latency)
    stats.add(session, tally)
    delivered = [o for o in outcomes if o.error is None]
    errors = [o.error for o in outcomes if o.error is not None]
    verdict = control.after_round(session, rt.settings, hook, gate, errors=errors, delivered=bool(delivered), now=now)
    notices.extend(verdict.notices)
    if delivered:
        session.execute(delete(Delivery).where(Delivery.id.in_([o.claimed.delivery_id for o in delivered])))
        finished = []
        for o in delivered:
            assert o.receipt is not None
            log.info("delivered: hook %s batch %s attempt %d, %d events, status %s, %.0f ms", hook.id,
                     o.claimed.delivery_id, o.claimed.attempt, len(o.claimed.events), o.receipt.status_code,
                     o.receipt.latency_ms)
            finished.append({"b_id": o.claimed.attempt_row, "outcome": "ok", "status_code": o.receipt.status_code,
                             "error": None, "latency_ms": o.receipt.latency_ms})
        _finish_attempts(session, finished)
    for outcome in outcomes:
        if outcome.error is not None:
            _record_failure(session, rt, hook, outcome.claimed, outcome.error, held=verdict.held, notices=notices)


def _record_failure(
    session: Session,
    rt: Runtime,
    hook: CompiledHook,
    c: Claimed,
    err: DeliveryError,
    *,
    held: bool,
    notices: list[dict[str, Any]],
) -> None:
    now = time.time()
    message = redact(f"{type(err).__name__}: {err.message}")[:ERROR_TEXT_LIMIT]
    log.warning("delivery failed: hook %s batch %s attempt %d: %s", hook.id, c.delivery_id, c.attempt, message)
    _finish_attempts(session, [{"b_id": c.attempt_row, "outcome": "error", "status_code": err.status_code,
                                "error": message, "latency_ms": None}])
    remaining = [e for i, e in enumerate(c.events) if i not in err.delivered]
    if not remaining:  # the error came after every event was through (e.g. a close): nothing to resend
        session.execute(delete(Delivery).where(Delivery.id == c.delivery_id))
        return
    values: dict[str, Any] = {"last_error": message, "last_status_code": err.status_code, "lease_until": 0.0}
    if len(remaining) != len(c.events):
        values.update(events=orjson.dumps(remaining), n_events=len(remaining))
    if held:  # paused (or gone): the attempt does not count and the batch waits for the probe
        values.update(attempts=c.attempt - 1, next_attempt_at=now)
        session.execute(update(Delivery).where(Delivery.id == c.delivery_id).values(**values))
        return
    delay = rt.policy.next_delay(c.attempt, err, random.random())
    if delay is None:
        _fail(session, hook, c.delivery_id, remaining, message, now=now, status=err.status_code, values=values,
              notices=notices)
        return
    values["next_attempt_at"] = now + delay
    session.execute(update(Delivery).where(Delivery.id == c.delivery_id).values(**values))


def _fail(
    session: Session,
    hook: CompiledHook,
    delivery_id: str,
    events: list[dict[str, Any]],
    message: str,
    *,
    now: float,
    notices: list[dict[str, Any]],
    status: int | None = None,
    values: dict[str, Any] | None = None,
) -> None:
    """Move a batch to the failed list, and capture a batch_failed event about it."""
    extra = dict(values or {})
    extra.update(status="failed", failed_at=now, last_error=message, last_status_code=status, lease_until=0.0)
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**extra))
    notice = control.batch_failed(hook, delivery_id, events, message, now)
    if notice is not None:
        notices.append(notice)


def _finish_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    """Complete attempt rows (one executemany: b_id, outcome, status_code, error, latency_ms each)."""
    table = Attempt.__table__
    session.connection().execute(
        table.update()
        .where(table.c.id == bindparam("b_id"))
        .values(outcome=bindparam("outcome"), status_code=bindparam("status_code"), error=bindparam("error"),
                latency_ms=bindparam("latency_ms")),
        rows,
    )


def replay(session: Session, hook_id: int, ids: list[str] | None) -> int:
    """Move failed batches of a hook (all, or `ids`) back to pending with fresh attempts; returns how many."""
    stmt = update(Delivery).where(Delivery.hook_id == hook_id, Delivery.status == "failed")
    if ids is not None:
        stmt = stmt.where(Delivery.id.in_(ids))
    result = session.execute(
        stmt.values(status="pending", attempts=0, next_attempt_at=time.time(), lease_until=0.0, failed_at=None)
    )
    return int(result.rowcount or 0)
