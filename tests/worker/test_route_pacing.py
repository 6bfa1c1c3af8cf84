"""A flow of small requests is routed by a few paced router tasks, not one task per request (issue 17);
requests of a platform's size are routed at once, as before.

The capture group committer commits every few milliseconds and POST /events once per request; each
commit used to find the route signal cleared by a router that had just started, raise it again and
send a trigger of its own, so a flow cost one route task (dispatch, claim, hook refresh, a drain
trigger) per commit. Counted here through the workers' own counter in the database (/metrics).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from actionhooks.observability.cluster import ClusterMetrics
from actionhooks.storage import intake
from actionhooks.storage.db import make_engine
from actionhooks.storage.tables import RouteSignal
from actionhooks.worker.route import ROUTE_PACE_BELOW_EVENTS, route_account
from actionhooks.worker.runtime import Runtime
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
        engine.kill("worker", signal.SIGTERM)  # a worker process adds its count when it stops
        routers = _tasks(engine)["route"]
        assert routers <= flow_sec / INTERVAL_SEC + flow_sec / 2 + 4, (routers, flow_sec)


def _request(session: Session, account_id: int, size: int) -> intake.Accepted:
    """One request of `size` events accepted as POST /events or a capture commit stores it."""
    events = [event(n, account_id=account_id, event_id=f"{account_id}-{time.monotonic_ns()}-{n}") for n in range(size)]
    return intake.accept_events(session, account_id, events, supplied_ids=[], dedup_window_sec=3600)


def _signal(session: Session, account_id: int) -> float | None:
    return session.scalar(select(RouteSignal.signalled_at).where(RouteSignal.account_id == account_id))


def test_a_router_of_small_requests_holds_the_signal_for_its_successor_and_one_of_large_requests_clears_it(
    rt: Runtime,
) -> None:
    with rt.sessions() as session:
        for _ in range(3):
            _request(session, 1, 1)  # captures, single events
        _request(session, 2, ROUTE_PACE_BELOW_EVENTS)  # a platform's batch
    before = time.time()
    assert route_account(rt, 1) == 3
    assert route_account(rt, 2) == ROUTE_PACE_BELOW_EVENTS
    with rt.sessions() as session:
        # The small requests' router holds the signal until its successor is due: what arrives meanwhile
        # sends no trigger of its own and waits for that successor
        held = _signal(session, 1)
        assert held is not None
        assert held >= before + rt.settings.ROUTE_INTERVAL_SEC
        assert not _request(session, 1, 1).signal_raised
        # The large request's router cleared it: the next request triggers a router at once
        assert _signal(session, 2) is None
        assert _request(session, 2, ROUTE_PACE_BELOW_EVENTS).signal_raised
