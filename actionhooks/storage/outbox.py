"""A hook's open batch window: rendered events waiting to be cut into batches (the `outbox` table's one writer).

The window of a hook is the rows it has in `outbox`, in id order. Events join it as a row of their
own (`append`: nothing already waiting is read or rewritten), so adding to a window costs what the
new events cost, whatever the window holds. Only cutting (worker/batching.py) reads the window's
events, and it takes them all out (`take`). Every row of a window carries the window's `due_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from actionhooks.storage.dialect import is_postgresql
from actionhooks.storage.tables import Outbox


def lock_formation(session: Session, hook_id: int) -> None:
    """Serialise batch formation for one hook until the transaction ends (a PostgreSQL advisory lock;
    SQLite has one writer anyway), so two routers never split the same remainder."""
    if is_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": hook_id})


@dataclass(frozen=True)
class Window:
    """An open window: how many events wait, since when (the oldest's arrival), until when."""

    n_events: int
    opened_at: float
    due_at: float


def window(session: Session, hook_id: int) -> Window | None:
    """The hook's open window, or None; reads no events (the counts of its rows only)."""
    n, opened_at, due_at = session.execute(
        select(func.sum(Outbox.n_events), func.min(Outbox.created_at), func.min(Outbox.due_at)).where(
            Outbox.hook_id == hook_id
        )
    ).one()
    return None if n is None else Window(int(n), opened_at, due_at)


# Built once on the Core table with the values as parameters (as storage/intake.py's _STORE): an ORM
# insert with .values() is built, and its cache key computed, on every call.
_APPEND = insert(Outbox.__table__)


def append(
    session: Session,
    hook_id: int,
    events: list[dict[str, Any]],
    now: float,
    *,
    due_at: float,
    accepted_at: float | None,
    trace_context: str | None,
) -> None:
    """Add `events` (arrived at `now`) to the hook's window as a row of their own."""
    session.connection().execute(_APPEND, {
        "hook_id": hook_id, "events": orjson.dumps(events), "n_events": len(events), "created_at": now,
        "due_at": due_at, "accepted_at": accepted_at, "trace_context": trace_context,
    })


def move_due(session: Session, hook_id: int, due_at: float) -> None:
    """Give the hook's window a new `due_at` (its batch_timeout_sec was changed while it was open)."""
    session.execute(update(Outbox).where(Outbox.hook_id == hook_id).values(due_at=due_at))


@dataclass(frozen=True)
class Waiting:
    """Everything a window held, taken out of it: its events in arrival order, and their origin."""

    events: list[dict[str, Any]]
    opened_at: float
    accepted_at: float | None  # the oldest acceptance among them
    trace_context: str | None  # the first routing span among them


def take(session: Session, hook_id: int) -> Waiting | None:
    """Remove the hook's window and return what it held (None: no window)."""
    rows = session.execute(
        select(Outbox.id, Outbox.events, Outbox.created_at, Outbox.accepted_at, Outbox.trace_context)
        .where(Outbox.hook_id == hook_id)
        .order_by(Outbox.id)
    ).all()
    if not rows:
        return None
    session.execute(delete(Outbox).where(Outbox.id.in_([row.id for row in rows])))
    accepted = [row.accepted_at for row in rows if row.accepted_at is not None]
    return Waiting(
        events=[event for row in rows for event in orjson.loads(row.events)],
        opened_at=min(row.created_at for row in rows),
        accepted_at=min(accepted) if accepted else None,
        trace_context=next((row.trace_context for row in rows if row.trace_context), None),
    )


def overdue_windows(session: Session, now: float, grace: float) -> list[int]:
    """Hooks whose batch window closed more than `grace` seconds ago and still waits to be cut."""
    return list(session.scalars(select(Outbox.hook_id).where(Outbox.due_at <= now - grace).distinct()))
