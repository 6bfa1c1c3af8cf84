"""Cluster-wide worker counters in the database (table worker_stats), the source of the workers' /metrics.

Workers run as Celery processes on any number of machines; a scraper should not have to find each
of them. So each worker adds the totals of one delivery round (a few rows, whatever the round's
size) to worker_stats in the transaction that records the round's outcomes: the figures count
exactly what was recorded, and a round lost with its worker is counted by the worker that redoes
it. Any API process sums the rows at scrape time, so one scrape target shows the whole cluster.

Rows are (name, labels, shard): a process adds to its own shard (pid and thread), so concurrent
rounds on a PostgreSQL cluster rarely wait on one hot row; shards are few, so the table stays small
(metrics x label sets x SHARDS) however many processes come and go.
"""

from __future__ import annotations

import bisect
import functools
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping

from sqlalchemy import Connection, Insert, func, select
from sqlalchemy.orm import Session

from actionhooks.storage.dialect import insert_for
from actionhooks.storage.tables import WorkerStat

SHARDS = 32
ATTEMPTS = "delivery_attempts"
DELIVERED_EVENTS = "delivered_events"
LATENCY = "delivery_latency_seconds"
LATENCY_SUM = "delivery_latency_seconds_sum"
HOOKS_NOT_COMPILED = "hooks_not_compiled"
TASKS = "worker_tasks"
# Accept -> delivered spans batching windows (seconds to minutes) and retries (minutes to hours).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)

Series = tuple[str, str]  # (name, labels as "k=v,k=v", keys sorted)


def labels_of(**labels: str) -> str:
    """The stored form of a label set; values are our own fixed words (transport types, outcomes)."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def parse_labels(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(",")) if text else {}


def bucket_label(seconds: float) -> str:
    """The `le` of the one histogram bucket `seconds` falls in (stored per bucket, cumulated on read)."""
    i = bisect.bisect_left(LATENCY_BUCKETS, seconds)
    return "+Inf" if i == len(LATENCY_BUCKETS) else repr(LATENCY_BUCKETS[i])


class Tally:
    """What one delivery round adds: counted in memory, written by `add` in one statement."""

    def __init__(self) -> None:
        self.values: dict[Series, float] = defaultdict(float)

    def attempt(self, transport: str, outcome: str, n: int = 1) -> None:
        self.values[(ATTEMPTS, labels_of(outcome=outcome, transport=transport))] += n

    def delivered(self, transport: str, n_events: int, latency_sec: float | None) -> None:
        self.values[(DELIVERED_EVENTS, labels_of(transport=transport))] += n_events
        if latency_sec is not None:
            latency_sec = max(0.0, latency_sec)
            self.values[(LATENCY, labels_of(le=bucket_label(latency_sec), transport=transport))] += 1
            self.values[(LATENCY_SUM, labels_of(transport=transport))] += latency_sec

    def task(self, name: str) -> None:
        """A worker ran a route or drain task (one per trigger that reached it: what triggers cost)."""
        self.values[(TASKS, labels_of(task=name))] += 1

    def hook_not_compiled(self, field: str) -> None:
        """A worker process found a stored hook version it cannot compile; `field`: a HookSpec field name."""
        self.values[(HOOKS_NOT_COMPILED, labels_of(field=field))] += 1


def shard() -> int:
    return (os.getpid() * 1_000_003 + threading.get_ident()) % SHARDS


def add(session: Session, tally: Tally) -> None:
    """Add a round's totals to the cumulative rows (in the caller's transaction; sorted: a fixed lock order)."""
    if not tally.values:
        return
    mine = shard()
    rows = [{"name": n, "labels": lab, "shard": mine, "value": v} for (n, lab), v in sorted(tally.values.items())]
    session.connection().execute(_add_to(insert_for(session)), rows)


@functools.cache
def _add_to(dialect_insert: Callable[..., Insert]) -> Insert:
    """The upsert that adds to the cumulative rows, for a dialect's `insert` (storage/dialect.py), built
    once on the Core table: built per call and run through the ORM's bulk path it cost 316 CPU-µs per
    round's totals on PostgreSQL, 134 this way (measured in the commit); every drain round adds one."""
    table = WorkerStat.__table__
    stmt = dialect_insert(table)
    return stmt.on_conflict_do_update(index_elements=["name", "labels", "shard"],
                                      set_={"value": table.c.value + stmt.excluded.value})


def totals(connection: Connection) -> Mapping[Series, float]:
    """Every series summed over the shards (the cluster's totals since the database was created)."""
    stmt = select(WorkerStat.name, WorkerStat.labels, func.sum(WorkerStat.value)).group_by(
        WorkerStat.name, WorkerStat.labels
    )
    return {(name, labels): float(value) for name, labels, value in connection.execute(stmt)}
