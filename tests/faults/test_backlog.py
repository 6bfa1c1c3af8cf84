"""A backlog on SQLite + Redis: events accepted while no worker runs, then more from 8 clients while it catches up.

Issue 13 saw 500s after 30 s in this scenario (200,000 events before the worker started, 100,000
while it caught up): routers and the hook watcher waited for each other across SQLite's write lock.
This is the same shape at a tenth of the volume, so it fits a shared 2-core machine: no request may
answer 5xx, and every accepted event is delivered.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.support.engine import event, http_hook, poll, redis_broker, running_engine
from tests.support.faults import outstanding
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

BEFORE = 20_000  # accepted before any worker runs
DURING = 10_000  # posted by CLIENTS threads while the worker catches up
CLIENTS = 8
PER_REQUEST = 250


def test_a_backlog_caught_up_while_8_clients_post_gets_no_5xx_and_delivers_everything(
    tmp_path: Path, receiver: Receiver
) -> None:
    with running_engine(tmp_path, "api", "scheduler", BROKER_URL=redis_broker(), WORKER_POOL="prefork",
                        WORKER_CONCURRENCY=2) as engine:
        with engine.client() as admin:
            admin.post("/hooks", json=http_hook(receiver.url, max_batch_size=1000, batch_timeout_sec=0.5))
        statuses: Counter[int] = Counter()
        accepted: list[str] = []
        lock = threading.Lock()

        def post(prefix: str, count: int) -> None:
            with engine.client(scope="ingest") as client:
                for start in range(0, count, PER_REQUEST):
                    batch = [event(start + i, event_id=f"{prefix}-{start + i}") for i in range(PER_REQUEST)]
                    answer = client.post("/events", json=batch, timeout=60)
                    with lock:
                        statuses[answer.status_code] += 1
                        if answer.status_code == 202:
                            accepted.extend(e["event_id"] for e in batch)

        started = time.monotonic()
        post("before", BEFORE)
        engine.start("worker")
        clients = [threading.Thread(target=post, args=(f"during{c}", DURING // CLIENTS)) for c in range(CLIENTS)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(300)
        poll(lambda: outstanding(engine) == 0, "the backlog to be delivered", timeout=600, every=1.0)
        seconds = time.monotonic() - started
    delivered = [e["event_id"] for r in receiver.requests for e in orjson.loads(r.body)]
    print(f"\n[fault] backlog {BEFORE}+{DURING} events, {CLIENTS} clients: statuses {dict(statuses)}, "
          f"{len(set(delivered))} delivered in {seconds:.0f}s")
    assert set(statuses) == {202}, statuses
    assert set(delivered) == set(accepted)
    assert len(accepted) == BEFORE + DURING
