"""Hooks in SQL: the HookRepository of hooks/service.py.

Every write bumps `hooks.version` and appends a `hook_changes` row in the same transaction, so a
worker that polls max(hook_changes.id) sees a change exactly when it is committed. Deleting a hook
also drops its queued work (outbox, deliveries, attempts) through the ON DELETE CASCADE foreign keys
(SQLite enforces them because db.py turns `foreign_keys` on for every connection).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.errors import NotFound
from actionhooks.hooks.models import Hook, HookSpec
from actionhooks.storage.tables import Hook as HookRow
from actionhooks.storage.tables import HookChange

__all__ = ["SqlHookRepository", "to_hook"]


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
            return to_hook(_row(session, account_id, hook_id))

    def list(self, account_id: int) -> list[Hook]:
        with self._sessions.begin() as session:
            rows = session.scalars(select(HookRow).where(HookRow.account_id == account_id).order_by(HookRow.id))
            return [to_hook(row) for row in rows]

    def update(self, account_id: int, hook_id: int, change: Callable[[Hook], HookSpec]) -> Hook:
        with self._sessions.begin() as session:
            row = _row(session, account_id, hook_id, lock=True)
            _write(row, change(to_hook(row)))
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


def to_hook(row: HookRow) -> Hook:
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
    )


def _row(session: Session, account_id: int, hook_id: int, *, lock: bool = False) -> HookRow:
    query = select(HookRow).where(HookRow.id == hook_id, HookRow.account_id == account_id)
    row = session.scalars(query.with_for_update() if lock else query).first()
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
