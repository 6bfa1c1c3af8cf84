"""The Redis broker killed and restarted empty while events are queued and in delivery.

A private redis-server (never the shared one on 6379) that keeps nothing on disk: its restart loses
every trigger it held. The broker only carries triggers, so no acknowledged event may be lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import http_hook, poll, running_engine
from tests.support.faults import (
    CountingReceiver,
    claimable_batches,
    counting_receiver,
    outstanding,
    post_events,
    private_redis,
    report,
    settle,
)

pytestmark = pytest.mark.slow

BATCH = 10
CONCURRENCY = 2


@pytest.fixture
def receiver() -> Iterator[CountingReceiver]:
    with counting_receiver(delay=0.3) as server:
        yield server


def test_a_redis_broker_restarted_empty_mid_delivery_loses_no_acknowledged_event(
    tmp_path: Path, receiver: CountingReceiver
) -> None:
    with private_redis(tmp_path) as broker, running_engine(
        tmp_path, "api", "worker", "scheduler",
        BROKER_URL=broker.url, WORKER_POOL="threads", WORKER_CONCURRENCY=CONCURRENCY,
        HOOK_HTTP_TIMEOUT_SEC=1, HOOK_RETRY_PERIOD_SEC=[0.5],
    ) as engine, engine.client() as api:
        hook = api.post("/hooks", json=http_hook(receiver.url, max_batch_size=BATCH, batch_timeout_sec=0.2)).json()
        sent = post_events(api, [f"redis-before-{i}" for i in range(500)])
        assert len(sent) == 500
        # When Redis dies (SIGKILL, nothing saved) while batches are in delivery
        receiver.wait_for(3, timeout=30)
        broker.kill()
        # Then the API still acknowledges events (the database is the queue) without hanging
        started = time.monotonic()
        during = post_events(api, [f"redis-during-{i}" for i in range(200)])
        post_seconds = time.monotonic() - started
        assert len(during) == 200
        assert outstanding(engine) > 0, "everything was delivered before Redis died; the test proves nothing"
        poll(lambda: b"Connection to broker lost" in engine.logs["worker"].read_bytes(), "the worker to lose Redis")
        # And once an empty Redis is back on the same port, everything acknowledged is delivered
        broker.start()
        result = settle(engine, api, hook["id"], sent + during, delivered=receiver.delivered_ids, timeout=60)
    report(f"Redis SIGKILLed and restarted empty (2 POSTs of 100 took {post_seconds:.1f}s while it was down)", result)
    assert result.lost == []
    assert post_seconds < 10
    # Nothing was killed but the broker: duplicates, if any, are batches in flight when the worker lost it
    assert result.duplicates <= claimable_batches(CONCURRENCY) * BATCH
