"""The workers' figures in the API's /metrics, for the whole cluster, read from the database.

Workers are Celery processes on any number of machines; they add per-round totals to worker_stats
(storage/stats.py), so any API process shows every worker's attempts, delivered events and latency
without the scraper knowing where workers run, and without a worker serving HTTP. Hook states are
counted from the hooks table itself, so they show whatever the workers decided (active, stopped,
and the delivery-control states when the hooks table has a `state` column).

Like the liveness gauges (observability.py), the figures are read at scrape time on the raw DBAPI
connection (never the write lock of an engine session), at most once per CACHE_SEC per process.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError

from actionhooks.storage import stats
from actionhooks.storage.tables import Hook

__all__ = ["ClusterMetrics", "ClusterSnapshot", "read_snapshot"]

CACHE_SEC = 2.0


class ClusterSnapshot:
    """Worker totals (stats.totals) and hooks by state, as read at one scrape."""

    def __init__(self, totals: Mapping[stats.Series, float], hooks_by_state: Mapping[str, int]) -> None:
        self.totals = totals
        self.hooks_by_state = hooks_by_state


def hook_state_column() -> object:
    """The column hooks are counted by: `state` when the schema has one (delivery control), else `active`."""
    return Hook.__table__.c.get("state", Hook.__table__.c.active)


def read_snapshot(engine: Engine) -> ClusterSnapshot:
    column = hook_state_column()
    with engine.connect() as connection:
        totals = stats.totals(connection)
        by_state = {}
        for state, count in connection.execute(select(column, func.count()).group_by(column)):
            name = state if isinstance(state, str) else ("active" if state else "stopped")
            by_state[name] = int(count)
        connection.rollback()
    return ClusterSnapshot(totals, by_state)


class ClusterMetrics(Collector):
    """The worker and hook-state metrics (absent while the database cannot answer)."""

    def __init__(self, engine: Engine, ttl: float = CACHE_SEC) -> None:
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: ClusterSnapshot | None = None
        self._expires = 0.0

    def _get(self) -> ClusterSnapshot:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now >= self._expires:
                self._value = read_snapshot(self._engine)
                self._expires = now + self._ttl
            return self._value

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._get()
        except DBAPIError:
            return
        yield from _counters(snap.totals)
        yield _latency(snap.totals)
        states = GaugeMetricFamily("actionhooks_hooks", "Hooks by state, across all accounts (read from the database).",
                                   labels=["state"])
        for state, count in sorted(snap.hooks_by_state.items()):
            states.add_metric([state], count)
        yield states


def _counters(totals: Mapping[stats.Series, float]) -> Iterator[Metric]:
    attempts = CounterMetricFamily(
        "actionhooks_delivery_attempts", "Delivery attempts recorded by all workers, by outcome (ok, error) and "
        "transport.", labels=["outcome", "transport"])
    delivered = CounterMetricFamily(
        "actionhooks_delivered_events", "Events delivered by all workers, by transport.", labels=["transport"])
    for (name, labels), value in sorted(totals.items()):
        lab = stats.parse_labels(labels)
        if name == stats.ATTEMPTS:
            attempts.add_metric([lab["outcome"], lab["transport"]], value)
        elif name == stats.DELIVERED_EVENTS:
            delivered.add_metric([lab["transport"]], value)
    yield attempts
    yield delivered


def _latency(totals: Mapping[stats.Series, float]) -> HistogramMetricFamily:
    histogram = HistogramMetricFamily(
        "actionhooks_delivery_latency_seconds",
        "From acceptance (POST /events, a capture) of a batch's oldest event to the batch's successful "
        "delivery, one observation per delivered batch, by transport (all workers).",
        labels=["transport"],
    )
    per_bucket: dict[str, dict[str, float]] = defaultdict(dict)
    sums: dict[str, float] = {}
    for (name, labels), value in totals.items():
        lab = stats.parse_labels(labels)
        if name == stats.LATENCY:
            per_bucket[lab["transport"]][lab["le"]] = value
        elif name == stats.LATENCY_SUM:
            sums[lab["transport"]] = value
    bounds = [repr(b) for b in stats.LATENCY_BUCKETS] + ["+Inf"]
    for transport in sorted(per_bucket):
        running = 0.0
        buckets = []
        for le in bounds:
            running += per_bucket[transport].get(le, 0.0)
            buckets.append((le, running))
        histogram.add_metric([transport], buckets, sum_value=sums.get(transport, 0.0))
    return histogram
