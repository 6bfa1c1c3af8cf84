"""Delivery batches, their attempts and the failed list: the one module that writes `deliveries` and `attempts`.

A batch row is the unit of attempt, retry and the failed list (storage/tables.py, `Delivery`). The
worker's drain (worker/deliver.py) claims, attempts and records through these operations, the
router and backfill add batches, the API lists attempts and failed batches and replays them, the
scheduler finds due batches and prunes the attempt log. Every operation runs in the caller's
transaction; the caller commits and, for writes, has taken the pipeline's lock order first
(storage/hooks.lock_existing).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Select, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from actionhooks.storage.tables import Attempt, Delivery


def new_batch(hook_id: int, account_id: int, events: list[dict[str, Any]], now: float, **extra: Any) -> dict[str, Any]:
    """The row of a new pending batch of `events` (`extra` overrides columns: a failed batch, its origin).
    Every column has a value, so rows of either kind go into one `add` (an executemany takes its
    columns from the first row)."""
    return {
        "id": uuid.uuid4().hex,
        "hook_id": hook_id,
        "account_id": account_id,
        "events": orjson.dumps(events),
        "n_events": len(events),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": 0.0,
        "created_at": now,
        "last_error": None,
        "last_status_code": None,
        "failed_at": None,
        "accepted_at": None,
        "trace_context": None,
        **extra,
    }


def add(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert batches made by `new_batch` (one executemany, on the Core table: the ORM's bulk path
    cost about twice the CPU per statement, see _BATCHES)."""
    if rows:
        session.connection().execute(_ADD, list(rows))


class Due(NamedTuple):
    """A batch a drain may attempt now."""

    id: str
    attempts: int
    events: bytes
    accepted_at: float | None
    trace_context: str | None
    n_events: int


# The drain's statements, run every round: built once, as Core statements on the tables (building
# them per call and running them through the ORM's bulk paths cost more CPU than the statements).
_BATCHES = Delivery.__table__
_ATTEMPTS = Attempt.__table__
_ADD = _BATCHES.insert()
_DUE = (
    select(_BATCHES.c.id, _BATCHES.c.attempts, _BATCHES.c.events, _BATCHES.c.accepted_at,
           _BATCHES.c.trace_context, _BATCHES.c.n_events)
    .where(
        _BATCHES.c.hook_id == bindparam("hook_id"),
        _BATCHES.c.status == "pending",
        _BATCHES.c.next_attempt_at <= bindparam("now"),
        _BATCHES.c.lease_until <= bindparam("now"),
    )
    .order_by(_BATCHES.c.next_attempt_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_LEASE = (
    _BATCHES.update()
    .where(_BATCHES.c.id.in_(bindparam("ids", expanding=True)))
    .values(attempts=_BATCHES.c.attempts + 1, lease_until=bindparam("lease_until"))
)
# No RETURNING of the new rows' ids: SQLite cannot return them in parameter order from one
# multi-row INSERT, so SQLAlchemy ran one INSERT per attempt (64 statements a round of small
# batches). An attempt is finished by its batch and number instead: a batch has at most one
# attempt 'started' at a time (a lost one is closed before the batch is claimed again).
_START = _ATTEMPTS.insert()
_FINISH = (
    _ATTEMPTS.update()
    .where(_ATTEMPTS.c.delivery_id == bindparam("d_id"), _ATTEMPTS.c.attempt == bindparam("d_attempt"),
           _ATTEMPTS.c.outcome == "started")
    .values(outcome=bindparam("outcome"), status_code=bindparam("status_code"), error=bindparam("error"),
            latency_ms=bindparam("latency_ms"))
)
_REMOVE = _BATCHES.delete().where(_BATCHES.c.id.in_(bindparam("ids", expanding=True)))


def due(session: Session, hook_id: int, now: float, limit: int) -> list[Due]:
    """Up to `limit` of the hook's pending batches whose time has come and whose lease has passed,
    oldest due first, locked until the transaction ends; on PostgreSQL rows another drain holds are
    skipped (FOR UPDATE SKIP LOCKED; SQLite, one writer at a time, compiles no locking clause)."""
    rows = session.connection().execute(_DUE, {"hook_id": hook_id, "now": now, "limit": limit})
    return [Due(*row) for row in rows]


def close_lost_attempts(session: Session, delivery_ids: list[str]) -> int:
    """An attempt still 'started' when its batch is claimed again was cut short by a dead worker; how many."""
    result = session.execute(
        update(Attempt)
        .where(Attempt.delivery_id.in_(delivery_ids), Attempt.outcome == "started")
        .values(outcome="error", error="worker lost during the attempt")
    )
    return int(result.rowcount or 0)


def start_attempts(
    session: Session, hook_id: int, started: list[tuple[str, int, int]], now: float, lease_until: float
) -> None:
    """Count an attempt of each (batch id, attempt number, events) and hide the batches until
    `lease_until`, before anything is sent (two statements, whatever the number of batches)."""
    connection = session.connection()
    connection.execute(_LEASE, {"ids": [delivery_id for delivery_id, _, _ in started], "lease_until": lease_until})
    connection.execute(
        _START,
        [
            {"hook_id": hook_id, "delivery_id": delivery_id, "attempt": attempt, "started_at": now,
             "n_events": n_events, "outcome": "started"}
            for delivery_id, attempt, n_events in started
        ],
    )


def finish_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    """Complete started attempts (one executemany: d_id the batch, d_attempt its attempt number,
    outcome, status_code, error, latency_ms each)."""
    session.connection().execute(_FINISH, rows)


def remove(session: Session, delivery_ids: list[str]) -> None:
    """Delete batches that need no further attempt (delivered, or nothing left to resend)."""
    session.connection().execute(_REMOVE, {"ids": delivery_ids})


def retry_later(
    session: Session,
    delivery_id: str,
    *,
    next_attempt_at: float,
    error: str,
    status_code: int | None,
    remaining: list[dict[str, Any]] | None = None,
    attempts: int | None = None,
) -> None:
    """Keep a batch pending until `next_attempt_at` after a failed attempt, with the attempt's error.

    `remaining`: the events still to send when the receiver took some of them; `attempts`: the
    attempt counter to set back (a paused hook's attempt does not count)."""
    values = _failed_attempt(error, status_code, remaining)
    values["next_attempt_at"] = next_attempt_at
    if attempts is not None:
        values["attempts"] = attempts
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))


def fail(
    session: Session,
    delivery_id: str,
    *,
    now: float,
    error: str,
    status_code: int | None,
    remaining: list[dict[str, Any]] | None = None,
) -> None:
    """Move a batch to the failed list (no more attempts until a replay)."""
    values = _failed_attempt(error, status_code, remaining)
    values.update(status="failed", failed_at=now)
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))


def _failed_attempt(error: str, status_code: int | None, remaining: list[dict[str, Any]] | None) -> dict[str, Any]:
    values: dict[str, Any] = {"last_error": error, "last_status_code": status_code, "lease_until": 0.0}
    if remaining is not None:
        values.update(events=orjson.dumps(remaining), n_events=len(remaining))
    return values


def replay(session: Session, hook_id: int, ids: list[str] | None, now: float) -> int:
    """Move failed batches of a hook (all, or `ids`) back to pending with fresh attempts; returns how many."""
    stmt = update(Delivery).where(Delivery.hook_id == hook_id, Delivery.status == "failed")
    if ids is not None:
        stmt = stmt.where(Delivery.id.in_(ids))
    result = session.execute(
        stmt.values(status="pending", attempts=0, next_attempt_at=now, lease_until=0.0, failed_at=None)
    )
    return int(result.rowcount or 0)


def withdraw(session: Session, among: Select[tuple[str]], now: float) -> list[str]:
    """Delete the batches of `among` (a query of batch ids) that wait to be sent and are not being
    sent now; returns their ids."""
    unsent = list(
        session.scalars(
            select(Delivery.id).where(Delivery.id.in_(among), Delivery.status == "pending", Delivery.lease_until <= now)
        )
    )
    if unsent:
        remove(session, unsent)
    return unsent


def failed(session: Session, hook_id: int, limit: int) -> list[Delivery]:
    """The hook's failed batches, latest failure first."""
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.hook_id == hook_id, Delivery.status == "failed")
            .order_by(Delivery.failed_at.desc())
            .limit(limit)
        )
    )


def attempts(session: Session, hook_id: int, limit: int) -> list[Attempt]:
    """The hook's latest attempts, newest first."""
    return list(
        session.scalars(select(Attempt).where(Attempt.hook_id == hook_id).order_by(Attempt.id.desc()).limit(limit))
    )


def due_hooks(session: Session, now: float) -> set[int]:
    """Hooks with a pending batch whose time has come and whose lease has passed."""
    return set(
        session.scalars(
            select(Delivery.hook_id)
            .where(Delivery.status == "pending", Delivery.next_attempt_at <= now, Delivery.lease_until <= now)
            .distinct()
        )
    )


def prune_attempts(session: Session, keep: int) -> None:
    """Keep the newest `keep` attempts of each hook. Attempt ids are global (hooks' attempts
    interleave), so the cut is the id of each hook's own keep+1-th newest attempt."""
    crowded = session.scalars(select(Attempt.hook_id).group_by(Attempt.hook_id).having(func.count() > keep)).all()
    for hook_id in crowded:
        cut = session.scalar(
            select(Attempt.id).where(Attempt.hook_id == hook_id).order_by(Attempt.id.desc()).offset(keep).limit(1)
        )
        if cut is not None:
            session.execute(delete(Attempt).where(Attempt.hook_id == hook_id, Attempt.id <= cut))
