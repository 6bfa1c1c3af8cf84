"""INSERT … ON CONFLICT DO UPDATE for SQLite and PostgreSQL, the one upsert both dialects share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Session

from actionhooks.storage.dialect import insert_for


def upsert(session: Session, table: type[DeclarativeBase], rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert `rows`, overwriting the non-key columns of rows whose `keys` already exist (atomic per row)."""
    if not rows:
        return
    statement = insert_for(session)(table).values(list(rows))
    updates = {name: statement.excluded[name] for name in rows[0] if name not in keys}
    session.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=updates))
