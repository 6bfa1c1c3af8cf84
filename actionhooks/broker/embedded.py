"""The embedded broker: a kombu transport on a SQLite file under DATA_DIR, made for triggers.

It replaces kombu's SQLAlchemy transport, which cost the embedded defaults about a second per
trigger (bench/triggers.py): Celery 5 has no `broker_polling_interval` setting, so that transport
polled at kombu's default of once a second, and each poll was an ORM query in a `BEGIN IMMEDIATE`
transaction on a rollback-journal file (fsyncs, 7-9 ms of CPU per send or receive); delivered
messages were only marked invisible, so the table and every poll's scan grew forever.

Here a trigger is one row: a send is one autocommitted INSERT, a receive one DELETE … RETURNING of
the queue's oldest row (atomic, so several consumers never get the same trigger). The consumer
polls every POLL_SEC, but a poll reads SQLite's `PRAGMA data_version` first — a counter that moves
only when another connection commits — and queries the table only when something was committed
since it last found the queue empty (or RECHECK_SEC passed): a wake-up through the file itself,
without the write lock and at the cost measured in the README (Performance).

Durability: WAL with synchronous=NORMAL survives a crash of any process; a power loss may lose the
last triggers. Like a trigger taken by a worker that dies before acking it (kombu's virtual
transports restore unacked messages only at a clean shutdown), that costs latency, never an event:
the work is in the database and the scheduler finds it (worker/scheduler.py).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from queue import Empty
from typing import Any

import orjson
from kombu.transport import virtual

SCHEME = "sqlite:///"
POLL_SEC = 0.01
RECHECK_SEC = 1.0  # query the table at least this often, whatever data_version says
BUSY_TIMEOUT_MS = 30_000
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS actionhooks_triggers "
    "(id INTEGER PRIMARY KEY, queue TEXT NOT NULL, payload BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS actionhooks_triggers_queue ON actionhooks_triggers (queue, id)",
)
_PUT = "INSERT INTO actionhooks_triggers (queue, payload) VALUES (?, ?)"
_SIZE = "SELECT count(*) FROM actionhooks_triggers WHERE queue = ?"
_TAKE = (
    "DELETE FROM actionhooks_triggers WHERE id = "
    "(SELECT id FROM actionhooks_triggers WHERE queue = ? ORDER BY id LIMIT 1) RETURNING payload"
)


def _connect(url: str) -> sqlite3.Connection:
    if not url.startswith(SCHEME):
        raise ValueError(f"the embedded broker needs a {SCHEME}<path> URL, not {url!r}")
    path = Path(url[len(SCHEME) :])
    path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit: each statement is its own transaction. A pooled producer may be used by another
    # thread than the one that opened it (never by two at once: kombu pools hand channels out whole).
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in _SCHEMA:
        db.execute(statement)
    return db


class Channel(virtual.Channel):
    """One SQLite connection per channel, opened on first use (after any fork) and closed with it."""

    _db: sqlite3.Connection | None = None

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        # queue -> (data_version when it was found empty, monotonic time of that query)
        self._empty: dict[str, tuple[int, float]] = {}

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = _connect(self.connection.client.hostname)
        return self._db

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self.db.execute(_PUT, (queue, orjson.dumps(message)))
        self._empty.clear()  # our own commits do not move our data_version

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        now = time.monotonic()
        seen = self._empty.get(queue)
        if seen is not None and seen[0] == version and now - seen[1] < RECHECK_SEC:
            raise Empty()  # nothing committed by anyone since the queue was found empty
        rows = self.db.execute(_TAKE, (queue,)).fetchall()  # fetched whole: the statement (and commit) ends
        if not rows:
            self._empty[queue] = (version, now)
            raise Empty()
        message: dict[str, Any] = orjson.loads(rows[0][0])
        return message

    def _size(self, queue: str) -> int:
        count: int = self.db.execute(_SIZE, (queue,)).fetchone()[0]
        return count

    def _purge(self, queue: str) -> int:
        return self.db.execute("DELETE FROM actionhooks_triggers WHERE queue = ?", (queue,)).rowcount

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self._purge(queue)

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        """Queues need no declaration: a queue is the rows that name it."""

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return True

    def close(self) -> None:
        super().close()
        if self._db is not None:
            self._db.close()
            self._db = None


class Transport(virtual.Transport):
    Channel = Channel
    can_parse_url = True  # the URL is the file's path, handed to the channel as is
    polling_interval = POLL_SEC
    default_port = 0
    driver_type = "sqlite"
    driver_name = "sqlite3"
    connection_errors = (*virtual.Transport.connection_errors, sqlite3.OperationalError)

    def driver_version(self) -> str:
        return sqlite3.sqlite_version
