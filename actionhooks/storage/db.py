"""Engine and session factory for SQLite (embedded) and PostgreSQL.

SQLite is tuned for several processes of one machine (API, workers, scheduler): WAL so readers
never block the writer, a busy timeout so writers queue instead of failing, and IMMEDIATE
transactions so a read-then-write never hits SQLite's deadlock-on-upgrade. Sessions that only read
(reader_factory) begin a deferred transaction instead: in WAL mode it never waits for the writer,
so a thread may read while holding an in-process lock that a writer waits for.
"""

from __future__ import annotations

import sqlite3
import time
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
# Waiting for SQLite's write lock: try again after these pauses (then every last one) until the busy
# timeout. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between
# tries, whatever the holder does: a lock held for 2 ms by the router cost the capture group commit
# 33 ms (tries at 1, 3, 8, 18, 33 ms), and every pixel of that batch waited as long (bench/capture.py,
# paced at 2,500/s: 36 ms cycles, one of 217 ms). A try is one system call, so trying every 0.5 ms
# costs a waiter well under 1% of a core.
_BUSY_PAUSES_SEC = (0.0001, 0.0002, 0.0005)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; creates the folder of a SQLite file and applies the SQLite pragmas."""
    parsed = make_url(url)
    # A failed statement's error (logged, raised) must not carry its parameters: they hold event and
    # message content, hook configurations and their secrets.
    kwargs.setdefault("hide_parameters", True)
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
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN")  # deferred: a reader never waits for the write lock
        else:
            begin_immediate(conn.connection.dbapi_connection)

    return engine


def begin_immediate(dbapi_conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in short steps (see _BUSY_PAUSES_SEC) instead of
    SQLite's growing sleeps; OperationalError "database is locked" after SQLITE_BUSY_TIMEOUT_MS."""
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        tries = 0
        while True:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as exc:  # mapped as SQLAlchemy maps it (UNAVAILABLE, cannot_write read it)
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from None
            time.sleep(_BUSY_PAUSES_SEC[min(tries, len(_BUSY_PAUSES_SEC) - 1)])
            tries += 1
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def engine_from_settings(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_only(engine: Engine) -> Engine:
    """`engine` for reading only: on SQLite its transactions BEGIN deferred, so they never take (or wait for)
    the write lock; elsewhere it is `engine`'s twin."""
    return engine.execution_options(**{_READ_ONLY: True})


def reader_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reading only; on SQLite they never take (or wait for) the write lock."""
    return sessionmaker(read_only(engine), expire_on_commit=False)


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
