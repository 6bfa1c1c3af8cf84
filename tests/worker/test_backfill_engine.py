"""Backfill end to end: real API, worker and scheduler processes (Redis broker), SQLite and PostgreSQL.

The story of the issue: events were accepted last week; a CRM hook is created today (so it captured
none of them live) and asks for them. The backfill must deliver exactly the archived events its
filters select, with their original event_id; survive its worker being killed in the middle; and
leave another hook's live events flowing meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from actionhooks.worker.backfill import MAX_OUTSTANDING_BATCHES
from tests.support.engine import Engine, event, http_hook, poll, postgres_database, redis_broker, running_engine
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.slow

REQUESTS = 120
PER_REQUEST = 100  # half of each request is campaign 1 (selected), half campaign 2


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@contextmanager
def _engine(tmp_path: Path, database: str) -> Iterator[Engine]:
    with postgres_database() if database == "postgresql" else nullcontext(None) as url:
        extra = {"DATABASE_URL": url} if url else {}
        with running_engine(tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker(), **extra) as eng:
            yield eng


def _archived_week(api: httpx.Client) -> set[str]:
    """Post REQUESTS requests of opens; returns the event_ids of those a campaign-1 hook selects."""
    selected: set[str] = set()
    for r in range(REQUESTS):
        batch = []
        for k in range(PER_REQUEST):
            one = event(r * PER_REQUEST + k, event_type="open", event_id=f"old-{r}-{k}")
            one["event_data"]["campaign_id"] = 1 + k % 2
            batch.append(one)
        assert api.post("/events", json=batch).status_code == 202
        selected.update(e["event_id"] for e in batch if e["event_data"]["campaign_id"] == 1)
    return selected


def _ids(receiver: Receiver) -> list[str]:
    return [e["event_id"] for r in receiver.requests for e in orjson.loads(r.body)]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_backfill_survives_a_worker_kill_delivers_original_ids_and_leaves_live_hooks_flowing(
    tmp_path: Path, database: str
) -> None:
    crm, other = Receiver(), Receiver()
    crm.default = Reply(delay=0.1)  # a receiver that takes its time: the backfill lasts a while
    try:
        with _engine(tmp_path, database) as eng, eng.client() as api:
            start = time.time() - 1
            expected = _archived_week(api)
            live_hook = api.post("/hooks", json={**http_hook(other.url, batch_timeout_sec=0), "actions": ["deliv"]})
            crm_hook = {
                **http_hook(crm.url, max_batch_size=50, batch_timeout_sec=0),
                "actions": ["open"], "filters": {"campaigns": [1]},
            }
            hook_id = api.post("/hooks", json=crm_hook).json()["id"]
            assert live_hook.status_code == 201
            job = api.post(f"/hooks/{hook_id}/backfill", json={"from": _iso(start), "to": _iso(time.time())})
            assert job.status_code == 202
            job_url = f"/backfills/{job.json()['id']}"

            # 1. Another hook's live events arrive while the backfill is still running
            sent: dict[str, float] = {}
            for n in range(5):
                live = event(10**6 + n, event_type="deliv", event_id=f"live-{n}")
                sent[live["event_id"]] = time.monotonic()
                assert api.post("/events", json=[live]).status_code == 202
                other.wait_until(lambda rs, n=n: len(rs) > n, f"live event {n}", timeout=30)
            assert api.get(job_url).json()["state"] == "running"
            latencies = sorted(r.received_at - sent[orjson.loads(r.body)[0]["event_id"]] for r in other.requests)
            print(f"[{database}] live latency of another hook during the backfill: {latencies}")

            # 2. The worker is killed in the middle; a new one resumes from the committed cursor
            poll(lambda: api.get(job_url).json()["delivered"] >= 500, "some of the backfill delivered", timeout=60)
            eng.kill("worker")
            before = api.get(job_url).json()
            assert before["state"] == "running"
            assert before["delivered"] < len(expected)
            eng.start("worker")
            done = poll(lambda: (p := api.get(job_url).json())["state"] == "done" and p, "backfill done", timeout=180)

            # 3. Exactly the selected events arrived, with their original ids. A batch claimed at the
            # kill may arrive twice (at least once); a job keeps at most MAX_OUTSTANDING_BATCHES unsent,
            # so no more than those can be claimed, and repeated, whatever the drains' parallelism.
            got = _ids(crm)
            assert set(got) == expected
            assert len(got) - len(expected) <= MAX_OUTSTANDING_BATCHES * 50
            assert (done["scanned"], done["matched"], done["delivered"], done["failed"]) == (
                REQUESTS * PER_REQUEST, len(expected), len(expected), 0,
            )
            assert all(orjson.loads(r.body)[0]["event_id"].startswith("live-") for r in other.requests)
    finally:
        crm.close()
        other.close()


def test_the_events_archived_stay_out_of_hooks_created_later_until_backfilled(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Sanity of the story's premise on the embedded defaults: a hook created after events were
    accepted receives none of them live; the backfill is what brings them."""
    with running_engine(tmp_path, "api", "worker", "scheduler") as eng, eng.client() as api:
        start = time.time() - 1
        batch: list[dict[str, Any]] = [event(n, event_type="open", event_id=f"e-{n}") for n in range(10)]
        assert api.post("/events", json=batch).status_code == 202
        hook_id = api.post("/hooks", json={**http_hook(receiver.url, batch_timeout_sec=0), "actions": ["open"]}).json()[
            "id"
        ]
        assert api.post("/events", json=[event(99, event_type="open", event_id="after")]).status_code == 202
        receiver.wait_for(1, timeout=30)
        assert _ids(receiver) == ["after"]
        job = api.post(f"/hooks/{hook_id}/backfill", json={"from": _iso(start), "to": _iso(time.time())}).json()
        poll(lambda: api.get(f"/backfills/{job['id']}").json()["state"] == "done", "backfill done", timeout=60)
        assert sorted(_ids(receiver)) == sorted(["after", *(e["event_id"] for e in batch), "after"])
