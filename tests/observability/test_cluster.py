"""The workers' figures in the API's /metrics: real processes on PostgreSQL, deliveries by two worker
processes (prefork children of their own) to a real HTTP receiver and a Redis stream; a database that
cannot answer leaves them out of the scrape."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actionhooks.observability.cluster import ClusterMetrics
from actionhooks.storage.db import make_engine
from tests.support.engine import Engine, http_hook, poll, postgres_database, redis_broker, running_engine
from tests.support.faults import CountingReceiver, outstanding, post_events
from tests.support.receiver import Reply

REDIS = "redis://127.0.0.1:6379/9"
BUCKET = "actionhooks_delivery_latency_seconds_bucket"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(engine: Engine) -> Samples:
    text = httpx.get(f"{engine.base_url}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def start_another_worker(engine: Engine, name: str) -> None:
    """A second worker process of the same deployment (as on another machine); engine.stop() stops it."""
    log = engine.folder / f"{name}.log"
    engine.logs[name] = log
    with open(log, "ab") as out:
        engine.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "actionhooks", "--config", str(engine.config_path), "worker"],
            cwd=engine.folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    poll(lambda: b" ready." in log.read_bytes() or engine._died(name), f"{name} ready", timeout=60)


@pytest.fixture
def stream() -> Iterator[str]:
    name = f"ah-metrics-{uuid.uuid4().hex[:12]}"
    yield name
    redis.Redis.from_url(REDIS).delete(name)


def test_attempts_by_outcome_and_transport_and_latency_of_all_workers_show_in_the_apis_metrics(
    tmp_path: Path, stream: str
) -> None:
    receiver = CountingReceiver()
    receiver.answer(Reply(status=500))  # the first HTTP attempt fails, its retry succeeds
    try:
        with postgres_database() as url, running_engine(
            tmp_path, "api", "worker", "scheduler", DATABASE_URL=url, BROKER_URL=redis_broker(),
            WORKER_POOL="prefork", WORKER_CONCURRENCY=2, HOOK_RETRY_PERIOD_SEC=[0.5],
        ) as engine, engine.client() as api:
            start_another_worker(engine, "worker-2")
            http = api.post("/hooks", json=http_hook(receiver.url, max_batch_size=10, batch_timeout_sec=0.2))
            assert http.status_code == 201, http.text
            queued = api.post("/hooks", json={"name": "stream", "actions": ["click"], "delivery": {
                "type": "redis_stream", "url": REDIS, "stream": stream}})
            assert queued.status_code == 201, queued.text
            # Given 200 events accepted by the API and delivered by the workers to both hooks
            sent = post_events(api, [f"m-{i}" for i in range(200)], per_request=50)
            assert len(sent) == 200
            poll(lambda: len(set(receiver.delivered_ids())) == 200, "the receiver to get every event", timeout=120)
            poll(lambda: redis.Redis.from_url(REDIS).xlen(stream) == 200, "the stream to get every event", timeout=60)
            poll(lambda: outstanding(engine) == 0, "nothing left to deliver", timeout=60)
            http_ok = len(receiver.requests) - 1

            # Then the API's /metrics shows what the worker processes did, by outcome and transport
            def settled() -> Samples | None:
                got = scrape(engine)
                key = ("actionhooks_delivery_attempts_total", (("outcome", "ok"), ("transport", "http")))
                return got if got.get(key) == http_ok else None

            got = poll(settled, "the workers' attempts in /metrics", timeout=30, every=0.5)
            attempts = "actionhooks_delivery_attempts_total"
            assert got[(attempts, (("outcome", "error"), ("transport", "http")))] == 1
            assert got[(attempts, (("outcome", "ok"), ("transport", "redis_stream")))] >= 1
            assert (attempts, (("outcome", "error"), ("transport", "redis_stream"))) not in got
            assert got[("actionhooks_delivered_events_total", (("transport", "http"),))] == 200
            assert got[("actionhooks_delivered_events_total", (("transport", "redis_stream"),))] == 200
            # And the accept -> delivered histogram has one observation per delivered batch
            for transport in ("http", "redis_stream"):
                ok = got[(attempts, (("outcome", "ok"), ("transport", transport)))]
                count = got[("actionhooks_delivery_latency_seconds_count", (("transport", transport),))]
                assert count == ok
                assert got[(BUCKET, (("le", "+Inf"), ("transport", transport)))] == ok
                assert got[("actionhooks_delivery_latency_seconds_sum", (("transport", transport),))] > 0
            # the batch that failed first waited for its retry (0.5 s ± jitter): not every batch is under 0.25 s
            assert got[(BUCKET, (("le", "0.25"), ("transport", "http")))] < http_ok
            # And hooks are counted by state
            assert got[("actionhooks_hooks", (("state", "active"),))] == 2
    finally:
        receiver.close()


def test_an_unreadable_database_leaves_the_worker_metrics_out_instead_of_failing_the_scrape(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")
    registry = CollectorRegistry()
    registry.register(ClusterMetrics(engine))
    assert "actionhooks_delivery_attempts" not in generate_latest(registry).decode()
