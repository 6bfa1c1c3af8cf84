"""Liveness that means progress, and the API's Prometheus metrics.

A worker that silently stopped consuming leaves every process up and the broker connected; only the
database shows it: intake nobody routes, due batches nobody sends, batch windows nobody cuts. So the
signal is the age of the oldest such work and the time of the last successful delivery, read from the
database with indexed min/max queries (or tables that stay small) and cached for CACHE_SEC, so that a
polled /healthz and a scraped /metrics cost one round of queries per API process every few seconds.

The queries run on the raw DBAPI connection: the engine's SQLite sessions BEGIN IMMEDIATE (the write
lock), which a read must never take; in autocommit each SELECT reads its own snapshot.

A database that answers reads may still refuse writes (disk full, read-only): then nothing
progresses although every query above answers. WriteHealth remembers how this process's latest
write ended (POST /events, or a one-row write probe when no write happened for WRITE_PROBE_SEC), and
/healthz reports a database that cannot write as an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, Select, func, select
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actionhooks.storage.db import cannot_write
from actionhooks.storage.health import probe_write
from actionhooks.storage.tables import Attempt, Delivery, Intake, Outbox, QuarantinedEvent

__all__ = [
    "CACHE_SEC",
    "Liveness",
    "LivenessCache",
    "RequestMetrics",
    "WriteHealth",
    "measure",
    "metrics_registry",
    "rejections_counter",
]

CACHE_SEC = 2.0
# How long without a write of its own before the API probes whether the database still takes one.
WRITE_PROBE_SEC = 10.0


@dataclass(frozen=True)
class Liveness:
    """What the engine's progress looks like from the database at `measured_at` (Unix seconds)."""

    measured_at: float
    oldest_queued_age_sec: float  # 0.0 when nothing waits
    last_delivery_at: float | None  # start of the latest successful attempt; None before the first
    pending_batches: int
    failed_batches: int
    intake_events: int
    quarantined_events: int = 0

    def details(self) -> dict[str, Any]:
        """The /healthz `details` object."""
        last = self.last_delivery_at
        return {
            "oldest_queued_age_sec": round(self.oldest_queued_age_sec, 3),
            "last_delivery_at": None if last is None else datetime.fromtimestamp(last, UTC).isoformat(),
            "pending_batches": self.pending_batches,
            "failed_batches": self.failed_batches,
            "intake_events": self.intake_events,
            "quarantined_events": self.quarantined_events,
        }


def _waiting_since(now: float) -> list[Select[Any]]:
    """Since when the oldest work of each kind waits: unrouted intake, due batches, overdue windows.

    A due batch counts whoever holds its lease: a batch claimed by a worker that died waits out the
    lease unsent, and one in flight is still waiting for its receiver; both are work not yet done.
    """
    return [
        select(Intake.created_at).order_by(Intake.id).limit(1),  # ids grow with arrival: the primary key
        select(func.min(Delivery.next_attempt_at)).where(  # ix_deliveries_due
            Delivery.status == "pending", Delivery.next_attempt_at <= now
        ),
        select(func.min(Outbox.due_at)).where(Outbox.due_at <= now),  # indexed; one row per open window
    ]


def measure(engine: Engine, now: float | None = None) -> Liveness:
    """Read the liveness figures; OperationalError when the database cannot answer."""
    now = time.time() if now is None else now
    try:
        raw = engine.raw_connection()
        try:
            since, last, by_status, intake, quarantined = _read(engine, raw.cursor(), now)
        finally:
            raw.close()
    except engine.dialect.loaded_dbapi.Error as exc:
        raise OperationalError("liveness queries", None, exc) from exc
    return Liveness(
        measured_at=now,
        oldest_queued_age_sec=max((now - t for t in since), default=0.0),
        last_delivery_at=last,
        pending_batches=int(by_status.get("pending", 0)),
        failed_batches=int(by_status.get("failed", 0)),
        intake_events=intake,
        quarantined_events=quarantined,
    )


def _read(engine: Engine, cursor: Any, now: float) -> tuple[list[float], float | None, dict[str, int], int, int]:
    def rows(stmt: Select[Any]) -> list[Any]:
        cursor.execute(str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})))
        return list(cursor.fetchall())

    def scalar(stmt: Select[Any]) -> Any:
        found = rows(stmt)
        return found[0][0] if found else None

    since = [t for t in (scalar(stmt) for stmt in _waiting_since(now)) if t is not None]
    last_ok = select(Attempt.started_at).where(Attempt.outcome == "ok").order_by(Attempt.id.desc()).limit(1)
    last = scalar(last_ok)  # newest first by primary key: stops at the first success
    by_status = dict(rows(select(Delivery.status, func.count()).group_by(Delivery.status)))
    intake = scalar(select(func.coalesce(func.sum(Intake.n_events), 0)))
    quarantined = scalar(select(func.count()).select_from(QuarantinedEvent))  # small: what could not be routed
    cursor.close()
    return since, last, by_status, int(intake or 0), int(quarantined or 0)


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
        self._ttl = ttl
        self.writes = writes or WriteHealth()
        self._probe_every = probe_every
        self._lock = threading.Lock()
        self._value: Liveness | None = None
        self._expires = 0.0

    def get(self) -> Liveness:
        with self._lock:  # one measurement at a time; concurrent probes share it
            now = time.monotonic()
            if self._value is None or now >= self._expires:
                self._value = measure(self._engine)
                self._expires = now + self._ttl
                if self.writes.quiet_for() >= self._probe_every:
                    self._probe()
            return self._value

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


class _LivenessCollector(Collector):
    """The liveness gauges, read at scrape time (absent while the database cannot answer)."""

    def __init__(self, liveness: LivenessCache) -> None:
        self._liveness = liveness

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            live = self._liveness.get()
        except OperationalError:
            return
        yield GaugeMetricFamily(
            "actionhooks_oldest_queued_age_seconds",
            "Seconds the oldest queued work has waited: unrouted intake, a due batch, an overdue batch window.",
            value=live.oldest_queued_age_sec,
        )
        yield GaugeMetricFamily(
            "actionhooks_last_delivery_timestamp_seconds",
            "Unix time the latest successful delivery attempt started (0 before the first).",
            value=live.last_delivery_at or 0.0,
        )
        yield GaugeMetricFamily("actionhooks_pending_batches", "Batches waiting to be sent or retried.",
                                value=live.pending_batches)
        yield GaugeMetricFamily("actionhooks_failed_batches", "Batches in the failed lists (every attempt used).",
                                value=live.failed_batches)
        yield GaugeMetricFamily("actionhooks_intake_events", "Accepted events not yet routed to their hooks.",
                                value=live.intake_events)
        yield GaugeMetricFamily(
            "actionhooks_quarantined_events",
            "Accepted events set aside because routing them kept failing (GET /api/v1/quarantine, replayable).",
            value=live.quarantined_events,
        )
        yield GaugeMetricFamily(
            "actionhooks_database_writable",
            "1 while the database takes this API's writes, 0 after a write failed for want of space or permission.",
            value=0 if self._liveness.writes.problem() else 1,
        )


class RequestMetrics:
    """ASGI middleware counting and timing the requests of one path (POST /events, the hot one)."""

    def __init__(self, app: ASGIApp, path: str, registry: CollectorRegistry) -> None:
        self.app = app
        self.path = path
        self.requests = Counter(
            "actionhooks_events_requests", "POST /events requests by status code.", ["status"], registry=registry
        )
        self.latency = Histogram(
            "actionhooks_events_request_duration_seconds",
            "Time to answer POST /events (validation and the durable write included).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.latency.observe(time.perf_counter() - started)
            self.requests.labels(status=str(status)).inc()


def rejections_counter(registry: CollectorRegistry) -> Counter:
    """POST /events requests refused for breaking an event rule, by reason (a fixed set: see EventsRejected)."""
    return Counter(
        "actionhooks_events_rejected_requests",
        "POST /events requests refused with 422 because an event broke a rule, by reason "
        "(too_long, nul_character, integer_range, invalid).",
        ["reason"],
        registry=registry,
    )


def hook_rejections_counter(registry: CollectorRegistry) -> Counter:
    """Hook saves (POST, PUT, PATCH /hooks) refused with 422, by the field at fault (a fixed set: see api/errors.py)."""
    return Counter(
        "actionhooks_hook_rejected_requests",
        "Hook saves refused with 422, by field (a top-level hook field, filters.match, delivery.auth or other).",
        ["field"],
        registry=registry,
    )


def metrics_registry(liveness: LivenessCache) -> CollectorRegistry:
    """A registry of one API (not the global one, so two apps in a process never mix their figures)."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    registry.register(_LivenessCollector(liveness))
    return registry
