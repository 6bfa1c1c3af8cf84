"""Hooks edited under load (issue 14): hooks are created, changed, stopped, activated and deleted
every ~100 ms while events flow to steady hooks, on both worker pools and both databases.

What a user depends on: every event acknowledged with 202 reaches each steady hook exactly once, no
attempt is wasted (no error recorded for any hook, churned ones included), no process logs an
exception. Short on purpose (CHURN_SEC): the machine is shared.
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from actionhooks.storage.db import make_engine
from actionhooks.storage.tables import Attempt
from tests.support.engine import Engine, http_hook, poll, redis_broker, running_engine
from tests.support.faults import CountingReceiver, failed_ids, outstanding, post_events, report, tally

pytestmark = pytest.mark.slow

CHURN_SEC = 20.0
CHURN_EVERY_SEC = 0.1
EVENTS_PER_REQUEST = 20
STEADY_HOOKS = 2
# What a log line of a problem looks like (tracebacks and their exception lines, error logs).
PROBLEM = re.compile(rb"Traceback|\bERROR\b|\bCRITICAL\b|Exception|\w+Error\b")



@pytest.fixture
def receivers() -> Iterator[tuple[CountingReceiver, CountingReceiver]]:
    steady, churned = CountingReceiver(), CountingReceiver()
    try:
        yield steady, churned
    finally:
        steady.close()
        churned.close()


def _delivered_to(receiver: CountingReceiver, hook_id: int) -> list[str]:
    with receiver._changed:
        answered = list(receiver.answered)
    return [e["event_id"] for r, reply in answered
            if r.headers.get("x-hook-id") == str(hook_id) and 200 <= reply.status < 300
            for e in orjson.loads(r.body)]


def _errors(engine: Engine) -> list[str]:
    db = make_engine(str(engine.config["DATABASE_URL"]))
    try:
        with db.connect() as conn:
            return [str(e) for e in conn.scalars(select(Attempt.error).where(Attempt.outcome == "error"))]
    finally:
        db.dispose()


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_hooks_churned_every_100ms_leave_steady_hooks_exact_with_no_wasted_attempt_and_no_exception(
    tmp_path: Path, database: str, pool: str, receivers: tuple[CountingReceiver, CountingReceiver]
) -> None:
    steady_rx, churn_rx = receivers
    with running_engine(
        tmp_path, "api", "worker", "scheduler",
        BROKER_URL=redis_broker(), DATABASE_URL=database, WORKER_POOL=pool, WORKER_CONCURRENCY=2,
        HOOK_HTTP_TIMEOUT_SEC=5, HOOK_RETRY_PERIOD_SEC=[0.5],
    ) as engine, engine.client() as api:
        steady = [api.post("/hooks", json=http_hook(steady_rx.url, max_batch_size=50, batch_timeout_sec=0.2)).json()
                  for _ in range(STEADY_HOOKS)]
        stop = threading.Event()
        sent: list[str] = []
        changes: Counter[str] = Counter()
        problems: list[str] = []
        wasted: set[str] = set()

        def post() -> None:
            with engine.client(scope="ingest") as ingest:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    ids = [f"churn-{pool}-{n}-{i}" for i in range(EVENTS_PER_REQUEST)]
                    sent.extend(post_events(ingest, ids, per_request=EVENTS_PER_REQUEST))
                    time.sleep(0.05)

        def churn() -> None:
            rng = random.Random(14)
            alive: dict[int, bool] = {}  # churned hook id -> active
            with engine.client() as admin:
                while not stop.wait(CHURN_EVERY_SEC):
                    op = rng.choice(["create", "change", "stop", "activate", "delete"]) if alive else "create"
                    hook_id = rng.choice(list(alive)) if alive else 0
                    if op == "create":
                        body = http_hook(churn_rx.url, max_batch_size=rng.randint(1, 20), batch_timeout_sec=0.1)
                        answer = admin.post("/hooks", json=body)
                        if answer.status_code == 201:
                            alive[answer.json()["id"]] = True
                    elif op == "change":
                        answer = admin.patch(f"/hooks/{hook_id}", json={
                            "delivery": {"max_batch_size": rng.randint(1, 20)}, "name": f"v{changes['change']}"})
                    elif op in ("stop", "activate"):
                        answer = admin.post(f"/hooks/{hook_id}/{op}")
                        alive[hook_id] = op == "activate"
                    else:
                        answer = admin.delete(f"/hooks/{hook_id}")
                        alive.pop(hook_id, None)
                    changes[op] += 1
                    if answer.status_code >= 400:
                        problems.append(f"{op} hook {hook_id}: {answer.status_code} {answer.text[:200]}")

        def watch_attempts() -> None:  # errors of hooks deleted later vanish with them: look while they live
            while not stop.wait(1.0):
                wasted.update(_errors(engine))

        threads = [threading.Thread(target=f) for f in (post, churn, watch_attempts)]
        for t in threads:
            t.start()
        time.sleep(CHURN_SEC)  # the load itself runs for this long; nothing waits on it
        stop.set()
        for t in threads:
            t.join(60)
        # Then, once the engine has finished its work, each steady hook got every event exactly once
        poll(lambda: outstanding(engine) == 0, "the engine to finish every acknowledged event", timeout=120, every=0.5)
        results = [tally(sent, _delivered_to(steady_rx, h["id"]), failed_ids(api, h["id"])) for h in steady]
        wasted.update(_errors(engine))
        # And the worker, stopped, closes its runtime's connections (each process that ran tasks logs it)
        engine.kill("worker", signal.SIGTERM)
        closed = engine.logs["worker"].read_bytes().count(b"closed its connections")
    db = database.split(":", maxsplit=1)[0]
    for hook, result in zip(steady, results, strict=True):
        report(f"hook churn pool={pool} db={db} hook={hook['id']} changes={dict(changes)}", result)
        assert result.lost == []
        assert result.failed_listed == 0
        assert result.duplicates == 0
        assert result.delivered == len(sent)
    assert sum(changes.values()) >= CHURN_SEC / CHURN_EVERY_SEC / 4  # the churn really happened
    assert problems == []
    assert sorted(wasted) == []
    assert closed >= 1
    logged = [(role, line[:400].decode(errors="replace")) for role, path in engine.logs.items()
              for line in path.read_bytes().splitlines()
              if PROBLEM.search(line)]
    assert logged == []
