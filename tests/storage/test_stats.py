"""worker_stats: per-round totals added by many processes, summed by the API's /metrics collector."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from actionhooks.observability.cluster import ClusterMetrics
from actionhooks.storage import stats
from actionhooks.storage.db import make_engine, session_factory
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tables import Hook, WorkerStat


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_rounds_of_several_processes_add_up_to_one_cumulative_histogram_and_counters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    # Given rounds recorded by three "processes" (shards): 5 http successes, 1 error, 1 kafka success
    for shard, (transport, outcome, latency) in enumerate(
        [("http", "ok", 0.07), ("http", "ok", 0.3), ("http", "error", None), ("http", "ok", 0.3),
         ("kafka", "ok", 7200.0), ("http", "ok", 50000.0), ("http", "ok", 0.01)]
    ):
        tally = stats.Tally()
        tally.attempt(transport, outcome)
        if outcome == "ok":
            tally.delivered(transport, 10, latency)
        monkeypatch.setattr(stats, "shard", lambda n=shard % 3: n)  # as if recorded by process n
        with sessions() as session:
            stats.add(session, tally)
            session.commit()
    with sessions() as session:
        session.add(Hook(account_id=1, name="on", active=True, actions=["open"], filters={}, custom_data={},
                         delivery={"type": "http", "url": "http://x/"}))
        session.add(Hook(account_id=1, name="off", active=False, actions=["open"], filters={}, custom_data={},
                         delivery={"type": "http", "url": "http://x/"}))
        session.commit()
        assert len(set(session.scalars(select(WorkerStat.shard)))) == 3
    registry = CollectorRegistry()
    registry.register(ClusterMetrics(engine))
    got = _samples(registry)
    # Then the counters are the sums over the shards
    assert got[("actionhooks_delivery_attempts_total", (("outcome", "ok"), ("transport", "http")))] == 5
    assert got[("actionhooks_delivery_attempts_total", (("outcome", "error"), ("transport", "http")))] == 1
    assert got[("actionhooks_delivery_attempts_total", (("outcome", "ok"), ("transport", "kafka")))] == 1
    assert got[("actionhooks_delivered_events_total", (("transport", "http"),))] == 50
    # And the histogram is cumulative, per transport, with its count and sum
    bucket = "actionhooks_delivery_latency_seconds_bucket"
    assert got[(bucket, (("le", "0.05"), ("transport", "http")))] == 1
    assert got[(bucket, (("le", "0.1"), ("transport", "http")))] == 2
    assert got[(bucket, (("le", "0.5"), ("transport", "http")))] == 4
    assert got[(bucket, (("le", "21600.0"), ("transport", "http")))] == 4
    assert got[(bucket, (("le", "+Inf"), ("transport", "http")))] == 5
    assert got[("actionhooks_delivery_latency_seconds_count", (("transport", "http"),))] == 5
    assert abs(got[("actionhooks_delivery_latency_seconds_sum", (("transport", "http"),))] - 50000.68) < 1e-6
    assert got[(bucket, (("le", "3600.0"), ("transport", "kafka")))] == 0
    assert got[(bucket, (("le", "21600.0"), ("transport", "kafka")))] == 1
    # And hooks are counted by state (active or stopped; held hooks are counted by reason)
    assert got[("actionhooks_hooks", (("state", "active"),))] == 1
    assert got[("actionhooks_hooks", (("state", "stopped"),))] == 1
    engine.dispose()
