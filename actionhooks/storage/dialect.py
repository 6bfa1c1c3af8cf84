"""The one place that tells SQLite from PostgreSQL for the statements whose SQL differs.

Both dialects speak INSERT … ON CONFLICT and RETURNING, but SQLAlchemy builds them from each
dialect's own `insert`; everything else the engine writes is portable SQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def is_postgresql(session: Session) -> bool:
    """True on PostgreSQL, False on SQLite (the two databases the engine supports)."""
    return session.get_bind().dialect.name == "postgresql"


def insert_for(session: Session) -> Any:
    """The dialect's `insert` (with `on_conflict_do_*`) for the database behind `session`."""
    return postgresql.insert if is_postgresql(session) else sqlite.insert
