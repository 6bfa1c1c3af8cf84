"""Cutting a hook's rendered events into delivery batches.

HTTP POST and S3 hooks batch: a batch leaves when `max_batch_size` events wait or `batch_timeout_sec`
after the first of them, across any number of POST /events requests. GET hooks send one event per
request, brokers one message per event with no window; for them a "batch" is just the events one
attempt carries, so publisher confirms and delivery reports are waited for in bulk.

Formation for one hook is serialised (storage/outbox.lock_formation), so two routers never split
the same remainder. Events that complete no batch and close no window join the open window without
anything already waiting being read or rewritten (storage/outbox.append); the window's events are
read only when batches are cut, and then leave it, so formation costs are linear in the events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from actionhooks.delivery.config import EventRate
from actionhooks.hooks.matching import CompiledHook
from actionhooks.storage import deliveries, outbox

BROKER_BATCH = 1000


def batch_limits(hook: CompiledHook) -> tuple[int, float]:
    """(events per batch, seconds the first event may wait for others) for a hook's delivery type."""
    config = hook.delivery
    if config.type == "http" and config.method == "GET":
        return 1, 0.0
    if config.type in ("http", "s3"):  # a POST body or an archive object: worth waiting for more events
        size, window = config.max_batch_size, float(config.batch_timeout_sec)
    else:
        size, window = BROKER_BATCH, 0.0
    if isinstance(config.rate_limit, EventRate):  # a batch is sent whole: half the bucket at most
        size = max(1, min(size, int(config.rate_limit.burst / 2)))
    return size, window


@dataclass(frozen=True)
class Formed:
    """What formation did: batches created, and when the open window (if any) is due, in seconds from now."""

    batches: int
    window_due_in: float | None
    window_opened: bool


# One waiting event: (arrival, event, acceptance, routing span).
_Waiting = tuple[float, dict[str, Any], float | None, str | None]


def form_batches(
    session: Session,
    hook: CompiledHook,
    new_events: list[dict[str, Any]],
    now: float | None = None,
    *,
    accepted_at: float | None = None,
    trace_context: str | None = None,
) -> Formed:
    """Append `new_events` to the hook's waiting events and cut every batch that is ready.

    Runs inside the caller's transaction; the caller commits. The window's start is the arrival of
    its oldest event, so the window never restarts while events join it; after a cut, the remainder
    waits as one window from the arrival of its oldest event. `accepted_at` (acceptance of the
    oldest new event) and `trace_context` (the routing span) travel with the events to their
    batches: per window and batch, the oldest acceptance and the first span, for the latency
    histogram and the deliver span's link (storage/stats.py, tracing.py).
    """
    now = time.time() if now is None else now
    size, window = batch_limits(hook)
    outbox.lock_formation(session, hook.id)
    open_window = outbox.window(session, hook.id)
    waiting = open_window.n_events if open_window else 0
    if not waiting and not new_events:
        return Formed(batches=0, window_due_in=None, window_opened=False)
    opened_at = open_window.opened_at if open_window else now
    if waiting + len(new_events) < size and now - opened_at < window:  # nothing to cut: join the window
        due_at = opened_at + window
        if open_window is not None and open_window.due_at != due_at:
            outbox.move_due(session, hook.id, due_at)
        if new_events:
            outbox.append(session, hook.id, new_events, now, due_at=due_at, accepted_at=accepted_at,
                          trace_context=trace_context)
        return Formed(batches=0, window_due_in=due_at - now, window_opened=not waiting)
    return _cut(session, hook, new_events, now, size=size, window=window, accepted_at=accepted_at,
                trace_context=trace_context)


def _cut(
    session: Session,
    hook: CompiledHook,
    new_events: list[dict[str, Any]],
    now: float,
    *,
    size: int,
    window: float,
    accepted_at: float | None,
    trace_context: str | None,
) -> Formed:
    """Take the window out, cut its events and the new ones into full batches (and the rest too when
    its window is over), and put what is left back as the window."""
    taken = outbox.take(session, hook.id)
    events: list[_Waiting] = []
    if taken is not None:  # what waited shares the window's start and origin
        events = [(taken.opened_at, event, taken.accepted_at, taken.trace_context) for event in taken.events]
    events.extend((now, event, accepted_at, trace_context) for event in new_events)
    full = len(events) - len(events) % size
    cut = [events[i : i + size] for i in range(0, full, size)]
    rest = events[full:]
    if rest and now - rest[0][0] >= window:
        cut.append(rest)
        rest = []
    deliveries.add(session, [
        deliveries.new_batch(hook.id, hook.account_id, [w[1] for w in chunk], now, **_origin(chunk)) for chunk in cut
    ])
    if rest:
        origin = _origin(rest)
        outbox.append(session, hook.id, [w[1] for w in rest], rest[0][0], due_at=rest[0][0] + window,
                      accepted_at=origin["accepted_at"], trace_context=origin["trace_context"])
    return Formed(
        batches=len(cut),
        window_due_in=max(0.0, rest[0][0] + window - now) if rest else None,
        window_opened=bool(rest) and len(rest) <= len(new_events),
    )


def _origin(chunk: list[_Waiting]) -> dict[str, Any]:
    """The oldest acceptance and the first trace context among `chunk`'s events."""
    accepted = [w[2] for w in chunk if w[2] is not None]
    return {
        "accepted_at": min(accepted) if accepted else None,
        "trace_context": next((w[3] for w in chunk if w[3]), None),
    }
