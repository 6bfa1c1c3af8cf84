"""A flow of small requests is routed by a few paced router tasks, not one task per request (issue 17).

The capture group committer commits every few milliseconds and POST /events once per request; each
commit used to find the route signal cleared by a router that had just started, raise it again and
send a trigger of its own, so a flow cost one route task (dispatch, claim, hook refresh, a drain
trigger) per commit. Counted here through the workers' own counter in the database (/metrics).
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from actionhooks.observability.cluster import ClusterMetrics
from actionhooks.storage.db import make_engine
from tests.support.engine import Engine, event, http_hook, poll, running_engine
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

INTERVAL_SEC = 0.5
REQUESTS = 120


def _tasks(engine: Engine) -> dict[str, float]:
    db = make_engine(engine.config["DATABASE_URL"])
    try:
        families = {family.name: family for family in ClusterMetrics(db, ttl=0).collect()}
    finally:
        db.dispose()
    return {s.labels["task"]: s.value for s in families["actionhooks_worker_tasks"].samples}


def test_a_flow_of_single_event_requests_is_routed_by_paced_tasks_and_every_event_delivered_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Given the embedded defaults' storage and broker, and a hook batching for 1 s
    with running_engine(tmp_path, "api", "worker", "scheduler", ROUTE_INTERVAL_SEC=INTERVAL_SEC) as engine:
        with engine.client() as api:
            hook = http_hook(receiver.url, max_batch_size=1000, batch_timeout_sec=1)
            api.post("/hooks", json=hook).raise_for_status()
            # When events arrive one request (one commit, one chance to trigger a router) after another
            started = time.monotonic()
            for i in range(REQUESTS):
                assert api.post("/events", json=event(i)).status_code == 202
            flow_sec = time.monotonic() - started
        # Then every event is delivered, once
        poll(lambda: sum(len(orjson.loads(r.body)) for r in receiver.requests) >= REQUESTS, "every event delivered",
             timeout=60)
        delivered = [e["profile_id"] for r in receiver.requests for e in orjson.loads(r.body)]
        assert sorted(delivered) == sorted(f"profile-{i}" for i in range(REQUESTS))
        # And the routers started at most once per interval while the flow lasted: the first at once, then
        # one per interval, one for the last events and one that finds nothing; the scheduler may add one
        # per 2 s if a successor is late on a loaded machine. Without pacing: about one per request.
        routers = _tasks(engine)["route"]
        assert routers <= flow_sec / INTERVAL_SEC + flow_sec / 2 + 4, (routers, flow_sec)
