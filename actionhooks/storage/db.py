"""Engine and session factory for SQLite (embedded) and PostgreSQL.

SQLite is tuned for several processes of one machine (API, workers, scheduler): WAL so readers
never block the writer, a busy timeout so writers queue instead of failing, and IMMEDIATE
transactions so a read-then-write never hits SQLite's deadlock-on-upgrade. Sessions that only read
(reader_factory) begin a deferred transaction instead: in WAL mode it never waits for the writer,
so a thread may read while holding an in-process lock that a writer waits for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.settings import Settings

_READ_ONLY = "actionhooks_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; creates the folder of a SQLite file and applies the SQLite pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None}, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


def engine_from_settings(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def reader_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reading only; on SQLite they never take (or wait for) the write lock."""
    return sessionmaker(engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False)


# What a failing database raises, as opposed to what a bad statement or bad data raises (Integrity,
# Data, Programming): the API answers these with 503 + Retry-After, never 500.
UNAVAILABLE = (OperationalError, InterfaceError, InternalError, PoolTimeout)

_SQLITE_CANNOT_WRITE = {8: "read-only database", 10: "disk I/O error", 13: "database or disk is full",
                        14: "cannot open database file"}


def cannot_write(exc: BaseException) -> str | None:
    """Why the database cannot take writes when `exc` says so (disk full, I/O error, read-only), else None.

    A busy or locked database, a deadlock or a lost connection are not it: they pass, or show as an
    unreachable database. SQLite: the primary result code; PostgreSQL: SQLSTATE classes 53
    (insufficient resources: disk full), 58 (system I/O error) and 25006 (read-only transaction).
    """
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        reason = _SQLITE_CANNOT_WRITE.get(code & 0xFF)
        return f"{reason} ({orig})" if reason else None
    state = getattr(orig, "sqlstate", None) or ""
    if state.startswith(("53", "58")) or state == "25006":
        return f"{type(orig).__name__}: {str(orig).strip().splitlines()[0] if str(orig).strip() else state}"
    return None
