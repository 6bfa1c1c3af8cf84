"""Hooks in SQL: the HookRepository of hooks/service.py.

Every write bumps `hooks.version` and appends a `hook_changes` row in the same transaction, so a
worker that polls max(hook_changes.id) sees a change exactly when it is committed. Deleting a hook
also drops its queued work (outbox, deliveries, attempts) through the ON DELETE CASCADE foreign keys
(SQLite enforces them because db.py turns `foreign_keys` on for every connection).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.errors import NotFound
from actionhooks.hooks.models import Hook, HookSpec
from actionhooks.storage import hook_state
from actionhooks.storage.tables import Hook as HookRow
from actionhooks.storage.tables import HookChange

__all__ = ["HOOK_COLUMNS", "SqlHookRepository", "hook_row", "lock_existing", "stop", "to_hook"]


class SqlHookRepository:
    """HookRepository over a sessionmaker; each call is one transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, account_id: int, spec: HookSpec) -> Hook:
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            row = HookRow(account_id=account_id, version=1, created_at=now, updated_at=now)
            _write(row, spec)
            session.add(row)
            session.flush()
            session.add(HookChange(hook_id=row.id, account_id=account_id))
            return to_hook(row)

    def get(self, account_id: int, hook_id: int) -> Hook:
        with self._sessions.begin() as session:
            status = hook_state.statuses(session, [hook_id]).get(hook_id)
            return to_hook(_row(session, account_id, hook_id), status)

    def list(self, account_id: int) -> list[Hook]:
        with self._sessions.begin() as session:
            rows = list(session.scalars(select(HookRow).where(HookRow.account_id == account_id).order_by(HookRow.id)))
            status = hook_state.statuses(session, [row.id for row in rows])
            return [to_hook(row, status.get(row.id)) for row in rows]

    def update(self, account_id: int, hook_id: int, change: Callable[[Hook], HookSpec]) -> Hook:
        with self._sessions.begin() as session:
            row = _row(session, account_id, hook_id, lock=True)
            was_active = row.active
            _write(row, change(to_hook(row)))
            if row.active and not was_active:  # started again: not paused, not gone, a full bucket
                hook_state.clear(session, hook_id)
            row.version += 1
            row.updated_at = datetime.now(UTC)
            session.add(HookChange(hook_id=hook_id, account_id=account_id))
            session.flush()
            return to_hook(row)

    def delete(self, account_id: int, hook_id: int) -> None:
        with self._sessions.begin() as session:
            gone = session.execute(
                delete(HookRow).where(HookRow.id == hook_id, HookRow.account_id == account_id)
            ).rowcount
            if not gone:
                raise NotFound("hook", hook_id)
            session.add(HookChange(hook_id=hook_id, account_id=account_id))


def lock_existing(session: Session, hook_ids: Iterable[int]) -> set[int]:
    """Which of `hook_ids` still exist, each kept from being deleted until the caller's transaction ends.

    The lock order of the pipeline (PostgreSQL): a transaction that writes a hook's outbox, batches
    or attempts first takes this KEY SHARE lock on the hook's row, in id order, before any of those
    rows; DELETE /hooks/{id} locks the hook row first and then cascades to them. So a delete waits for
    a router or drain that is writing for the hook (and then drops what it wrote), or makes it see the
    hook gone; it can never hold the hook while the other holds a batch (the deadlock of issue 13).
    KEY SHARE does not conflict with an edit of the hook (FOR NO KEY UPDATE), only with its deletion.
    SQLite has one writer at a time: the query just says which hooks exist.
    """
    wanted = sorted(set(hook_ids))
    if not wanted:
        return set()
    stmt = select(HookRow.id).where(HookRow.id.in_(wanted)).order_by(HookRow.id)
    stmt = stmt.with_for_update(key_share=True, read=True)  # SQLite compiles no locking clause
    return set(session.scalars(stmt))


def stop(session: Session, hook_id: int) -> None:
    """Stop a hook from the engine's side (its receiver answered 410 Gone), in the caller's transaction:
    the same change as a user's stop (active false, a new version the workers' caches notice)."""
    row = session.get(HookRow, hook_id)
    if row is None or not row.active:
        return
    row.active = False
    row.version += 1
    row.updated_at = datetime.now(UTC)
    session.add(HookChange(hook_id=hook_id, account_id=row.account_id))
    session.flush()


def to_hook(row: HookRow, status: hook_state.HookStatus | None = None) -> Hook:
    """The domain hook of a row, re-validated so a hook the engine runs always passed HookSpec."""
    spec = HookSpec.model_validate(
        {
            "name": row.name,
            "active": row.active,
            "database_id": row.database_id,
            "actions": row.actions,
            "filters": row.filters,
            "custom_data": row.custom_data,
            "include_content": row.include_content,
            "delivery": row.delivery,
        }
    )
    return Hook(
        id=row.id,
        account_id=row.account_id,
        version=row.version,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        spec=spec,
        paused_since=status.paused_since if status is not None and row.active else None,
    )


# The columns a compiled hook is made of (hooks/matching.py's compile_hook reads them by these names).
HOOK_COLUMNS = (
    "id",
    "account_id",
    "version",
    "active",
    "name",
    "database_id",
    "actions",
    "filters",
    "custom_data",
    "include_content",
    "delivery",
)


def hook_row(row: HookRow) -> dict[str, Any]:
    """A stored hook as the plain dict compile_hook takes (the API's hook endpoints and the workers' cache)."""
    return {name: getattr(row, name) for name in HOOK_COLUMNS}


def _row(session: Session, account_id: int, hook_id: int, *, lock: bool = False) -> HookRow:
    query = select(HookRow).where(HookRow.id == hook_id, HookRow.account_id == account_id)
    # FOR NO KEY UPDATE: an edit never waits for routers and drains holding the hook (lock_existing)
    row = session.scalars(query.with_for_update(key_share=True) if lock else query).first()
    if row is None:
        raise NotFound("hook", hook_id)
    return row


def _write(row: HookRow, spec: HookSpec) -> None:
    data = spec.model_dump(mode="json")
    if data["active"] and not row.active:
        row.active_since = time.time()
    for field, value in data.items():
        setattr(row, field, value)


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
