"""The write probe: does the database still take a write? (/healthz, observability/liveness.py)

Reads prove little about a full disk or a read-only database, so the API rewrites one row of
`write_probes` when it has written nothing for a while. On SQLite the probe waits at most
PROBE_BUSY_MS for the write lock: a busy database (a router's transaction) is not a failing one, and
the probe then reports nothing rather than hold /healthz behind the writer.
"""

from __future__ import annotations

import time
from contextlib import suppress

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from actionhooks.storage.db import SQLITE_BUSY_TIMEOUT_MS
from actionhooks.storage.tables import WriteProbe

__all__ = ["PROBE_BUSY_MS", "probe_write"]

PROBE_BUSY_MS = 200
_SQLITE_BUSY = 5


def probe_write(engine: Engine, name: str = "api") -> bool:
    """Write one row and commit; True when written, False when SQLite was busy; raises the DBAPI error
    the database gave otherwise (disk full, read-only, I/O error)."""
    pg = engine.dialect.name == "postgresql"
    ins = (postgresql if pg else sqlite).insert(WriteProbe).values(name=name, probed_at=time.time())
    stmt = ins.on_conflict_do_update(index_elements=[WriteProbe.name], set_={"probed_at": ins.excluded.probed_at})
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if pg:
            cursor.execute(sql)
            raw.commit()
            return True
        cursor.execute(f"PRAGMA busy_timeout={PROBE_BUSY_MS}")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except engine.dialect.loaded_dbapi.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == _SQLITE_BUSY:
                return False
            raise
        try:
            cursor.execute(sql)
            cursor.execute("COMMIT")
        except BaseException:
            with suppress(engine.dialect.loaded_dbapi.Error):  # SQLite may have rolled back already
                cursor.execute("ROLLBACK")
            raise
        return True
    finally:
        if not pg:
            raw.cursor().execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        raw.close()
