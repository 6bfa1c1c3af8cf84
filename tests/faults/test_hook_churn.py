"""Hooks created and deleted while events route and deliver (PostgreSQL, Redis, real processes).

Before issue 13 a route task inserting batches for a hook deleted meanwhile hit a foreign-key
violation that rolled its whole chunk back, and DELETE /hooks/{id} could deadlock against a drain
recording its attempt (500 "deadlock detected"). Now routers and drains lock the hook row first
(KEY SHARE), the order a delete takes: under churn no delete fails, no task fails, and every event
of the hook that is never deleted is delivered.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.support.engine import event, http_hook, poll, postgres_database, redis_broker, running_engine
from tests.support.faults import outstanding
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.slow

CHURN_SEC = 20.0


def test_deleting_hooks_while_events_route_and_deliver_fails_no_delete_no_task_and_loses_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = Reply(delay=0.02)  # drains are in flight when deletes land
    with postgres_database("actionhooks_churn") as url, running_engine(
        tmp_path, "api", "worker", "scheduler", DATABASE_URL=url, BROKER_URL=redis_broker(),
        WORKER_POOL="threads", WORKER_CONCURRENCY=4,
    ) as engine, engine.client() as api:
        keeper = api.post("/hooks", json={**http_hook(receiver.url + "?keep", max_batch_size=50,
                                                     batch_timeout_sec=0)})
        keeper.raise_for_status()
        stop = threading.Event()
        deletes: list[int] = []
        sent: list[str] = []
        errors: list[str] = []

        def churn() -> None:
            with engine.client() as admin:
                while not stop.is_set():
                    ids = []
                    for _ in range(3):
                        made = admin.post("/hooks", json=http_hook(receiver.url + "?churn", max_batch_size=10,
                                                                   batch_timeout_sec=0))
                        if made.status_code != 201:
                            errors.append(f"create {made.status_code} {made.text}")
                        else:
                            ids.append(made.json()["id"])
                    time.sleep(random.uniform(0.05, 0.4))
                    for hook_id in ids:
                        gone = admin.delete(f"/hooks/{hook_id}")
                        deletes.append(gone.status_code)
                        if gone.status_code != 204:
                            errors.append(f"delete {gone.status_code} {gone.text}")

        def post() -> None:
            with engine.client(scope="ingest") as ingest:
                n = 0
                while not stop.is_set():
                    batch = [event(n + i, event_id=f"churn-{n + i}") for i in range(100)]
                    answer = ingest.post("/events", json=batch)
                    if answer.status_code == 202:
                        sent.extend(e["event_id"] for e in batch)
                    else:
                        errors.append(f"events {answer.status_code} {answer.text}")
                    n += 100
                    time.sleep(0.05)

        threads = [threading.Thread(target=churn), threading.Thread(target=post)]
        for thread in threads:
            thread.start()
        time.sleep(CHURN_SEC)
        stop.set()
        for thread in threads:
            thread.join(30)
        poll(lambda: outstanding(engine) == 0, "the engine to route and deliver everything", timeout=120, every=0.5)
        log = engine.logs["worker"].read_text()

    kept = [e["event_id"] for r in receiver.requests if r.query.get("keep") is not None or "keep" in r.path
            for e in orjson.loads(r.body)]
    print(f"\n[fault] hook churn {CHURN_SEC:.0f}s: {len(deletes)} deletes, {len(sent)} events, "
          f"{len(kept)} delivered to the kept hook")
    assert errors == []
    assert len(deletes) >= 10, "too little churn to prove anything"
    assert "deadlock detected" not in log
    assert "ForeignKeyViolation" not in log
    assert "raised unexpected" not in log, log[-3000:]
    assert set(kept) == set(sent)
