"""SQLite's write lock: a writer waits for it (in short steps), and past the busy timeout gets the
database's own error, mapped as SQLAlchemy maps it (the API's 503 path reads it)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from actionhooks.storage import db


def holder(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_a_writer_waits_for_the_lock_another_connection_holds(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    other = holder(tmp_path / "x.db")
    released = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    released.start()
    with engine.begin() as conn:  # finds the lock taken, waits, then writes
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    released.join()
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
    engine.dispose()


def test_past_the_busy_timeout_the_writer_gets_sqlalchemys_operational_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 100)
    other = holder(tmp_path / "x.db")
    with pytest.raises(OperationalError) as raised, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert raised.value.orig.sqlite_errorcode == sqlite3.SQLITE_BUSY  # type: ignore[union-attr]
    assert db.cannot_write(raised.value) is None  # busy is not "cannot write": it passes
    other.execute("COMMIT")
    with engine.begin() as conn:  # the connection that failed to begin is usable again
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
    engine.dispose()
