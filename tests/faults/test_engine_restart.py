"""The whole engine (`actionhooks run`, embedded defaults) stopped or killed with events queued, then restarted."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import http_hook, running_engine
from tests.support.faults import (
    CountingReceiver,
    claimable_batches,
    counting_receiver,
    outstanding,
    post_events,
    report,
    settle,
)

pytestmark = pytest.mark.slow

EVENTS = 1000
BATCH = 20
CONCURRENCY = 2


@pytest.fixture
def receiver() -> Iterator[CountingReceiver]:
    # Answers slow enough that one drain task (10 s budget) cannot finish the backlog
    with counting_receiver(delay=1.0) as server:
        yield server


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_whole_engine_stopped_mid_delivery_delivers_everything_after_a_restart(
    tmp_path: Path, receiver: CountingReceiver, sig: signal.Signals
) -> None:
    # The `run` role on the embedded defaults (SQLite database, SQLite broker): what a fresh machine runs
    with running_engine(
        tmp_path, "run", WORKER_POOL="prefork", WORKER_CONCURRENCY=CONCURRENCY,
        # A deadline far above the receiver's 1 s, so a busy machine's slow answer is not cut and
        # retried: a duplicate that would have nothing to do with the stop
        HOOK_HTTP_TIMEOUT_SEC=5, HOOK_RETRY_PERIOD_SEC=[0.5],
    ) as engine, engine.client() as api:
        hook = api.post("/hooks", json=http_hook(receiver.url, max_batch_size=BATCH, batch_timeout_sec=0.2)).json()
        sent = post_events(api, [f"restart-{sig.name}-{i}" for i in range(EVENTS)])
        assert len(sent) == EVENTS
        # When the engine's whole process group is signalled while it delivers
        receiver.wait_for(3, timeout=30)
        stopping = time.monotonic()
        engine.kill("run", sig)
        stopped_in = time.monotonic() - stopping
        queued = outstanding(engine)
        before_restart = len(receiver.delivered_ids())
        assert queued > 0, "the engine finished before it was stopped; the test proves nothing"
        # Then, restarted, it delivers every acknowledged event (or failed-lists it)
        engine.start("run")
        result = settle(engine, api, hook["id"], sent, delivered=receiver.delivered_ids, timeout=60)
    report(
        f"whole engine {sig.name} (stopped in {stopped_in:.1f}s, {queued} events queued, "
        f"{before_restart} delivered before the restart)",
        result,
    )
    assert result.lost == []
    if sig == signal.SIGTERM:
        # A graceful stop finishes and records the attempts in flight: nothing arrives twice
        assert result.duplicates == 0
    else:
        # Only batches in flight when the engine went down can arrive twice
        assert result.duplicates <= claimable_batches(CONCURRENCY) * BATCH
