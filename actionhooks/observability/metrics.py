"""An API's Prometheus registry: process figures, the liveness gauges and the refusal counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import DBAPIError

from actionhooks.observability.liveness import LivenessCache

__all__ = ["CommitMetrics", "hook_rejections_counter", "metrics_registry", "overloaded_counter", "rejections_counter"]


class _LivenessCollector(Collector):
    """The liveness gauges, read at scrape time (absent while the database cannot answer)."""

    def __init__(self, liveness: LivenessCache) -> None:
        self._liveness = liveness

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            live = self._liveness.get()
        except DBAPIError:
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


def rejections_counter(registry: CollectorRegistry) -> Counter:
    """POST /events requests refused for breaking an event rule, by reason (a fixed set: see EventsRejected)."""
    return Counter(
        "actionhooks_events_rejected_requests",
        "POST /events requests refused with 422 because an event broke a rule, by reason "
        "(too_long, nul_character, integer_range, invalid).",
        ["reason"],
        registry=registry,
    )


def overloaded_counter(registry: CollectorRegistry) -> Counter:
    """POST /events requests refused because the group commit's waiting room was full (storage/committer.py)."""
    return Counter(
        "actionhooks_events_overloaded_requests",
        "POST /events requests refused with 503 + Retry-After because too many requests (or too many of "
        "the account's) already waited for a commit.",
        registry=registry,
    )


class CommitMetrics:
    """The group commit's sizes (storage/committer.py): requests and events per committed transaction."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Histogram("actionhooks_intake_commit_batch_requests",
                                  "Requests (POST /events and capture) made durable per group-commit transaction.",
                                  buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 20000), registry=registry)
        self.events = Histogram("actionhooks_intake_commit_batch_events",
                                "Events made durable per group-commit transaction.",
                                buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000), registry=registry)

    def observe(self, requests: int, events: int) -> None:
        self.requests.observe(requests)
        self.events.observe(events)


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
