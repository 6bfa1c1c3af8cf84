"""A delivery worker killed with SIGKILL mid-delivery, again and again, with both worker pools."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import http_hook, redis_broker, running_engine
from tests.support.faults import CountingReceiver, claimable_batches, counting_receiver, post_events, report, settle

pytestmark = pytest.mark.slow

EVENTS = 600
BATCH = 10
KILLS = 3
CONCURRENCY = 2


@pytest.fixture
def receiver() -> Iterator[CountingReceiver]:
    with counting_receiver(delay=0.3) as server:
        yield server


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_worker_killed_three_times_mid_delivery_loses_no_acknowledged_event(
    tmp_path: Path, receiver: CountingReceiver, pool: str
) -> None:
    with running_engine(
        tmp_path, "api", "worker", "scheduler",
        BROKER_URL=redis_broker(), WORKER_POOL=pool, WORKER_CONCURRENCY=CONCURRENCY,
        HOOK_HTTP_TIMEOUT_SEC=1, HOOK_RETRY_PERIOD_SEC=[0.5],
    ) as engine, engine.client() as api:
        hook = api.post("/hooks", json=http_hook(receiver.url, max_batch_size=BATCH, batch_timeout_sec=0.2)).json()
        # Given 600 events acknowledged with 202 (requests of 100)
        sent = post_events(api, [f"kill-{pool}-{i}" for i in range(EVENTS)])
        assert len(sent) == EVENTS
        # When the worker is killed with SIGKILL while requests are in flight, three times
        for _ in range(KILLS):
            receiver.wait_for(len(receiver.requests) + 2, timeout=30)
            engine.kill("worker", signal.SIGKILL)
            engine.start("worker")
        # Then every event is delivered or failed-listed once the engine settles
        result = settle(engine, api, hook["id"], sent, delivered=receiver.delivered_ids, timeout=60)
    report(f"worker SIGKILL x{KILLS}, pool={pool}", result)
    assert result.lost == []
    # And duplicates come only from batches in flight at a kill: at most every sending thread's batch
    assert result.duplicates <= KILLS * claimable_batches(CONCURRENCY) * BATCH
