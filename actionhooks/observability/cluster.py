"""The workers' figures in the API's /metrics, for the whole cluster, read from the database.

Workers are Celery processes on any number of machines; they add per-round totals to worker_stats
(storage/stats.py), so any API process shows every worker's attempts, delivered events and latency
without the scraper knowing where workers run, and without a worker serving HTTP. Hook states are
counted from the hooks table itself, so they show whatever the workers decided (active, stopped,
and held hooks by reason from the delivery-state table).

Like the liveness gauges (liveness.py), the figures are read at scrape time on a read-only
connection (storage/monitoring.py: never the write lock), at most once per CACHE_SEC per process.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from actionhooks.observability.cache import CACHE_SEC, Cached
from actionhooks.storage import stats
from actionhooks.storage.monitoring import read_snapshot

__all__ = ["ClusterMetrics"]


class ClusterMetrics(Collector):
    """The worker and hook-state metrics (absent while the database cannot answer)."""

    def __init__(self, engine: Engine, ttl: float = CACHE_SEC) -> None:
        self._snapshot = Cached(lambda: read_snapshot(engine), ttl)

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._snapshot.get()
        except DBAPIError:
            return
        yield from _counters(snap.totals)
        yield _latency(snap.totals)
        states = GaugeMetricFamily("actionhooks_hooks", "Hooks by state, across all accounts (read from the database).",
                                   labels=["state"])
        for state, count in sorted(snap.hooks_by_state.items()):
            states.add_metric([state], count)
        yield states
        if snap.held:
            held = GaugeMetricFamily(
                "actionhooks_hooks_held",
                "Hooks whose delivery is held, by reason: paused (dead receiver), rate_limited, "
                "gone (stopped by a 410).",
                labels=["reason"])
            for reason, count in sorted(snap.held.items()):
                held.add_metric([reason], count)
            yield held


def _counters(totals: Mapping[stats.Series, float]) -> Iterator[Metric]:
    attempts = CounterMetricFamily(
        "actionhooks_delivery_attempts", "Delivery attempts recorded by all workers, by outcome (ok, error, lost: "
        "cut short by a worker that died) and transport.", labels=["outcome", "transport"])
    delivered = CounterMetricFamily(
        "actionhooks_delivered_events", "Events delivered by all workers, by transport.", labels=["transport"])
    not_compiled = CounterMetricFamily(
        "actionhooks_hooks_not_compiled", "Stored hook versions a worker process could not compile (left out of "
        "matching until changed; each process counts once), by the field of the first error.", labels=["field"])
    tasks = CounterMetricFamily(
        "actionhooks_worker_tasks", "Route and drain tasks run by all workers, by task (each trigger that reached a "
        "worker runs one, whether it found work or not).", labels=["task"])
    for (name, labels), value in sorted(totals.items()):
        lab = stats.parse_labels(labels)
        if name == stats.ATTEMPTS:
            attempts.add_metric([lab["outcome"], lab["transport"]], value)
        elif name == stats.DELIVERED_EVENTS:
            delivered.add_metric([lab["transport"]], value)
        elif name == stats.HOOKS_NOT_COMPILED:
            not_compiled.add_metric([lab["field"]], value)
        elif name == stats.TASKS:
            tasks.add_metric([lab["task"]], value)
    yield attempts
    yield delivered
    yield not_compiled
    yield tasks


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
