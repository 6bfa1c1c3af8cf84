"""Cutting a hook's rendered events into delivery batches.

HTTP POST and S3 hooks batch: a batch leaves when `max_batch_size` events wait or `batch_timeout_sec`
after the first of them, across any number of POST /events requests. GET hooks send one event per
request, brokers one message per event with no window; for them a "batch" is just the events one
attempt carries, so publisher confirms and delivery reports are waited for in bulk.

Formation for one hook is serialised (a PostgreSQL advisory lock; SQLite has one writer anyway),
so two routers never split the same remainder.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, text
from sqlalchemy.orm import Session

from actionhooks.delivery.config import EventRate
from actionhooks.hooks.matching import CompiledHook
from actionhooks.storage.tables import Delivery, Outbox

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


def lock_hook(session: Session, hook_id: int) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": hook_id})


def new_delivery(hook: CompiledHook, events: list[dict[str, Any]], now: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "hook_id": hook.id,
        "account_id": hook.account_id,
        "events": orjson.dumps(events),
        "n_events": len(events),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": 0.0,
        "created_at": now,
        **extra,
    }


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

    Runs inside the caller's transaction; the caller commits. The remainder stays as one outbox row
    whose `created_at` is the arrival time of its oldest event, so the window never restarts.
    `accepted_at` (acceptance of the oldest new event) and `trace_context` (the routing span) travel
    with the events to their batches: per outbox row and batch, the oldest acceptance and the first
    span, for the latency histogram and the deliver span's link (storage/stats.py, tracing.py).
    """
    now = time.time() if now is None else now
    size, window = batch_limits(hook)
    lock_hook(session, hook.id)
    rows = session.execute(
        select(Outbox.id, Outbox.events, Outbox.created_at, Outbox.accepted_at, Outbox.trace_context)
        .where(Outbox.hook_id == hook.id)
        .order_by(Outbox.id)
    ).all()
    waiting: list[tuple[float, dict[str, Any], float | None, str | None]] = [
        (created_at, event, accepted, trace) for _, blob, created_at, accepted, trace in rows
        for event in orjson.loads(blob)
    ]
    waiting.extend((now, event, accepted_at, trace_context) for event in new_events)
    full = len(waiting) - len(waiting) % size
    cut = [waiting[i : i + size] for i in range(0, full, size)]
    rest = waiting[full:]
    if rest and now - rest[0][0] >= window:
        cut.append(rest)
        rest = []
    if cut:
        session.execute(insert(Delivery), [new_delivery(hook, [w[1] for w in chunk], now, **_origin(chunk))
                                           for chunk in cut])
    if rows:
        session.execute(delete(Outbox).where(Outbox.id.in_([r[0] for r in rows])))
    if rest:
        session.execute(
            insert(Outbox).values(
                hook_id=hook.id,
                events=orjson.dumps([w[1] for w in rest]),
                n_events=len(rest),
                created_at=rest[0][0],
                due_at=rest[0][0] + window,
                **_origin(rest),
            )
        )
    return Formed(
        batches=len(cut),
        window_due_in=max(0.0, rest[0][0] + window - now) if rest else None,
        window_opened=bool(rest) and len(rest) <= len(new_events),
    )


def _origin(chunk: list[tuple[float, dict[str, Any], float | None, str | None]]) -> dict[str, Any]:
    """The oldest acceptance and the first trace context among `chunk`'s events."""
    accepted = [w[2] for w in chunk if w[2] is not None]
    return {
        "accepted_at": min(accepted) if accepted else None,
        "trace_context": next((w[3] for w in chunk if w[3]), None),
    }


def overdue_windows(session: Session, now: float, grace: float) -> list[int]:
    """Hooks whose batch window closed more than `grace` seconds ago and still waits to be cut."""
    return list(session.scalars(select(Outbox.hook_id).where(Outbox.due_at <= now - grace).distinct()))
