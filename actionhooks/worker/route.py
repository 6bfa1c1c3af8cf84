"""Routing: intake rows -> matched, rendered events in each hook's batches.

One task handles thousands of events: it claims up to ROUTE_CHUNK_EVENTS of an account's intake
at a time, matches each event against the compiled hook index, loads the profiles, catalog names
and stored content the matched hooks need in a few bulk queries, renders custom_data, and cuts
batches — all in one transaction with the removal of the intake rows, so a crash at any point
either routes a request completely or leaves it for the next router.

One event never blocks the others. A chunk is routed inside a savepoint; when that fails with an
error that belongs to the data (the database refusing a value or a row, a bug our code hits only
for some event: POISON), the chunk is bisected, each half in its own savepoint, down to the events
that fail on their own. Those are quarantined with their error (storage/quarantine.py: listed by
GET /quarantine, counted in /metrics, replayable) in the same transaction that routes the rest and
removes the chunk from the intake. A failing database (disk full, lost connection, lock timeout) is
not the event's fault: it fails the task, and the chunk stays for the next try.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from actionhooks import tracing
from actionhooks.hooks.rendering import render_matched
from actionhooks.storage import content as content_store
from actionhooks.storage import deliveries, intake, quarantine
from actionhooks.storage.hooks import lock_existing
from actionhooks.worker import shutdown
from actionhooks.worker.batching import form_batches

if TYPE_CHECKING:
    from actionhooks.worker.runtime import Runtime

log = logging.getLogger(__name__)

ROUTE_CHUNK_EVENTS = 5000
ROUTE_TIME_BUDGET_SEC = 10.0
# Requests (intake rows: a POST /events, a capture group commit) of fewer events than this on average
# cost more in the router tasks they trigger (dispatch, claim, hook refresh, a drain trigger: a few ms
# each) than in their events, so their routers are paced (ROUTE_INTERVAL_SEC) to take many at once.
ROUTE_PACE_BELOW_EVENTS = 100
# Errors that follow an event wherever it is routed: what the database refuses for its values or rows
# (DataError: too long, NUL, out of range; IntegrityError: a constraint or a trigger), and what our code
# raises only for some input. OperationalError, InterfaceError, InternalError are the database's state.
POISON: tuple[type[Exception], ...] = (
    DataError, IntegrityError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
)

Accepted = list[tuple[float, dict[str, Any]]]


def route_account(rt: Runtime, account_id: int) -> int:
    """Route the account's waiting intake; returns the number of events routed.

    Paced for small requests: a router whose last chunk came from requests of fewer than
    ROUTE_PACE_BELOW_EVENTS events on average keeps the account's route signal raised and sends its
    successor's trigger due ROUTE_INTERVAL_SEC after its own start (storage/intake.hold_signal), so
    what is accepted meanwhile sends no trigger and is routed by that successor as one chunk. A flow
    of small commits (the capture group committer commits every few milliseconds, ~25 hits each)
    then costs a few route tasks a second, each routing hundreds of events and forming several
    batches at once for one drain, instead of a task, a claim and a drain per commit. The pause
    holds no worker process: it is a countdown trigger. Larger requests are worth a task each and
    are not delayed: the router clears the signal, so what is accepted next raises it again and is
    routed at once (on PostgreSQL it looks once more before it ends, see intake.clear_signal).
    """
    started = time.time()
    routed = 0
    cleared = False
    rt.count_task("route")
    deadline = time.monotonic() + ROUTE_TIME_BUDGET_SEC
    while time.monotonic() < deadline and not shutdown.requested():
        with rt.sessions() as session:
            ids, events, traces, more = intake.claim(session, account_id, ROUTE_CHUNK_EVENTS)
            if not ids:
                if cleared:
                    return routed
                look_again = intake.clear_signal(session, account_id)
                session.commit()
                if not look_again:
                    return routed
                cleared = True
                continue  # one more look: what was accepted before the clear is there now
            # After the claim: every hook change committed before these events were accepted is seen.
            rt.hooks.refresh(force=True)  # reads only: never waits for the write lock this session holds
            with tracing.span("actionhooks.route", links=traces, account_id=account_id, events=len(events)):
                wakes = _route_isolating(rt, session, account_id, events)
                intake.remove(session, ids)
                small = len(events) < ROUTE_PACE_BELOW_EVENTS * len(ids)  # requests, on average
                successor_at = max(started + rt.settings.ROUTE_INTERVAL_SEC, time.time())
                paced = look_again = False
                if not (more or cleared):  # this chunk was all that waited
                    if small:
                        paced = intake.hold_signal(session, account_id, started=started, until=successor_at)
                    else:
                        look_again = intake.clear_signal(session, account_id)  # the look: after the commit
                session.commit()
        for hook_id, wake in wakes.items():
            if wake.now:
                rt.triggers.drain(hook_id)  # batches were cut
            if wake.window_in is not None and not (wake.now and wake.window_in <= 0):
                rt.triggers.drain(hook_id, countdown=wake.window_in or None)  # a window opened: close it on time
        routed += len(events)
        if more:
            continue
        if not look_again:
            # Routed all that waited: after the clear, what came later raised the signal and sent its
            # own trigger; a paced router's successor (or the router that raised the signal after
            # this one started) takes what arrives. Ending frees this worker process for the drains
            # this chunk triggered (prefetch 1).
            if paced:
                rt.triggers.route(account_id, countdown=max(0.0, successor_at - time.time()) or None)
            return routed
        cleared = True
    rt.triggers.route(account_id)  # budget used up with work left: continue in a fresh task
    return routed


@dataclass(frozen=True, slots=True)
class Wake:
    """The drains a routed chunk asks of one hook: one now (batches were cut) and one when the window it
    opened closes (seconds from now), either or both. Both when a chunk cuts batches and its remainder
    opens a new window: that window's close is then not left to the scheduler's next look."""

    now: bool = False
    window_in: float | None = None

    def merge(self, other: Wake) -> Wake:
        windows = [w for w in (self.window_in, other.window_in) if w is not None]
        return Wake(self.now or other.now, min(windows) if windows else None)


def _route_isolating(rt: Runtime, session: Session, account_id: int, accepted: Accepted) -> dict[int, Wake]:
    """Route `accepted`, quarantining the events that fail on their own (see the module docstring).

    Returns the drains to trigger per hook. A chunk with one poison event costs about 2·log2(n)
    extra partial routings, each of at most half the previous part.
    """
    wakes: dict[int, Wake] = {}
    parts = [accepted]
    while parts:
        part = parts.pop()
        try:
            with session.begin_nested():
                routed = _route_events(rt, session, account_id, part)
        except POISON as exc:
            if len(part) > 1:
                middle = len(part) // 2
                parts += [part[middle:], part[:middle]]  # the first half next: events keep their order
                continue
            accepted_at, event = part[0]
            error = _describe(exc)
            log.warning("account %s: event %s quarantined, routing it failed: %s",
                        account_id, event.get("event_id"), error.splitlines()[0])
            quarantine.quarantine(session, account_id, event, accepted_at, error)
            continue
        for hook_id, wake in routed.items():
            wakes[hook_id] = wakes[hook_id].merge(wake) if hook_id in wakes else wake
    return wakes


def _describe(exc: Exception) -> str:
    """The error as its admin reads it: the database's own message, not our SQL and its parameters."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(cause).__name__}: {cause}".strip()


def _route_events(rt: Runtime, session: Session, account_id: int, accepted: Accepted) -> dict[int, Wake]:
    """Match, render and batch events; returns the drains to trigger per hook."""
    now = time.time()
    contents = content_store.remember(session, account_id, [event for _, event in accepted], now)
    matched: dict[int, list[dict[str, Any]]] = defaultdict(list)
    first_accepted: dict[int, float] = {}
    for accepted_at, event in accepted:
        for hook in rt.hooks.capturing(event, accepted_at):
            matched[hook.id].append(event)
            first_accepted[hook.id] = min(accepted_at, first_accepted.get(hook.id, accepted_at))
    if not matched:
        return {}
    # A hook deleted since the cache saw it loses its share (the rest is routed); one that exists is
    # kept from being deleted until this transaction ends (lock_existing: the pipeline's lock order).
    alive = lock_existing(session, matched)
    hooks = [h for h in (rt.hooks.get(hook_id) for hook_id in matched) if h is not None and h.id in alive]
    to_trigger: dict[int, Wake] = {}
    for hook, rendered, broken in render_matched(
        session, rt.settings, account_id, hooks, matched, contents=contents, now=now
    ):
        if broken:
            deliveries.add(session, [broken])
        formed = form_batches(session, hook, rendered, now, accepted_at=first_accepted[hook.id],
                              trace_context=tracing.current())
        window_in = formed.window_due_in if formed.window_opened else None
        if formed.batches or window_in is not None:
            to_trigger[hook.id] = Wake(bool(formed.batches), window_in)
    return to_trigger
