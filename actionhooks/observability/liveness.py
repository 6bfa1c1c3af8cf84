"""Liveness that means progress, and whether the database still takes writes.

The progress figures are read from the database (storage/monitoring.py) at most once per CACHE_SEC
per process. A database that answers reads may still refuse writes (disk full, read-only): then
nothing progresses although every read answers. WriteHealth remembers how this process's latest
write ended (POST /events, or a one-row write probe when no write happened for WRITE_PROBE_SEC),
and /healthz reports a database that cannot write as an error.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from actionhooks.observability.cache import CACHE_SEC, Cached
from actionhooks.storage.db import cannot_write
from actionhooks.storage.health import probe_write
from actionhooks.storage.monitoring import Liveness, measure

__all__ = ["CACHE_SEC", "WRITE_PROBE_SEC", "LivenessCache", "WriteHealth"]

# How long without a write of its own before the API probes whether the database still takes one.
WRITE_PROBE_SEC = 10.0


class WriteHealth:
    """How this process's latest write to the database ended: the reason it could not write, if it could not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ok_at = 0.0
        self._failed_at = 0.0
        self._reason: str | None = None

    def succeeded(self) -> None:
        with self._lock:
            self._ok_at = time.monotonic()

    def failed(self, reason: str) -> None:
        with self._lock:
            self._failed_at, self._reason = time.monotonic(), reason

    def problem(self) -> str | None:
        """Why the database cannot write, while no write succeeded since the latest failure."""
        with self._lock:
            return self._reason if self._failed_at > self._ok_at else None

    def quiet_for(self) -> float:
        """Seconds since the latest write outcome (success or failure)."""
        with self._lock:
            return time.monotonic() - max(self._ok_at, self._failed_at)


class LivenessCache:
    """measure() at most once per `ttl` seconds per process; failures are never cached.

    When this process has written nothing for `probe_every` seconds, a measurement also probes a
    write (storage/health.py), so a database that stopped taking writes shows while the API is idle.
    """

    def __init__(
        self, engine: Engine, ttl: float = CACHE_SEC, writes: WriteHealth | None = None,
        probe_every: float = WRITE_PROBE_SEC,
    ) -> None:
        self._engine = engine
        self.writes = writes or WriteHealth()
        self._probe_every = probe_every
        self._cached = Cached(self._measure, ttl)

    def get(self) -> Liveness:
        return self._cached.get()

    def _measure(self) -> Liveness:
        live = measure(self._engine)
        if self.writes.quiet_for() >= self._probe_every:
            self._probe()
        return live

    def _probe(self) -> None:
        try:
            wrote = probe_write(self._engine)
        except self._engine.dialect.loaded_dbapi.Error as exc:
            reason = cannot_write(exc)
            if reason is not None:
                self.writes.failed(reason)
            return
        if wrote:
            self.writes.succeeded()
