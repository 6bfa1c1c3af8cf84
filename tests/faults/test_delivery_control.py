"""Delivery control end to end (README: Rate limits, Pause and resume): real receivers, real worker processes.

- the rate limit holds across several worker processes sharing one database (SQLite and
  PostgreSQL), and a limited hook's backlog does not hold back another hook;
- a dead receiver pauses its hook, one batch probes it, the first success resumes it, and every
  event captured meanwhile is delivered with nothing in the failed list;
- 410 Gone stops the hook; the operational events reach another hook, never the hook they are about.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.engine import http_hook, poll, postgres_database, redis_broker, running_engine
from tests.support.faults import CountingReceiver, post_events
from tests.support.receiver import Reply

pytestmark = pytest.mark.slow

RATE = 50  # events per second
EVENTS = 1000  # 20 seconds' worth
WINDOW = 10.0


@pytest.fixture
def receivers() -> Iterator[list[CountingReceiver]]:
    servers = [CountingReceiver() for _ in range(3)]
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


def _events_at(receiver: CountingReceiver) -> list[tuple[float, int]]:
    """(arrival time, events in the request) of every request answered 2xx."""
    with receiver._changed:
        answered = list(receiver.answered)
    return [(r.received_at, len(orjson.loads(r.body))) for r, reply in answered if 200 <= reply.status < 300]


def _busiest_window(arrivals: list[tuple[float, int]], window: float) -> int:
    """Most events that arrived within any `window` seconds (windows starting at each arrival)."""
    arrivals.sort()
    best = 0
    for i, (start, _) in enumerate(arrivals):
        best = max(best, sum(n for t, n in arrivals[i:] if t < start + window))
    return best


def test_the_rate_limit_holds_across_worker_processes_and_does_not_slow_other_hooks(
    tmp_path: Path, database: str, receivers: list[CountingReceiver]
) -> None:
    limited, free, _ = receivers
    with running_engine(
        tmp_path, "api", "worker", "worker#2", "scheduler",
        DATABASE_URL=database, BROKER_URL=redis_broker(), WORKER_CONCURRENCY=3,
    ) as engine, engine.client() as api:
        body = http_hook(limited.url, batch_timeout_sec=0.2, rate_limit={"events_per_sec": RATE})
        hook = api.post("/hooks", json=body)
        assert hook.status_code == 201, hook.text
        assert hook.json()["delivery"]["rate_limit"] == {"events_per_sec": RATE}
        other = api.post("/hooks", json=http_hook(free.url, batch_timeout_sec=0.2)).json()
        # Given 20 seconds' worth of events at the limit, accepted at once, for both hooks
        sent = post_events(api, [f"rate-{i}" for i in range(EVENTS)])
        assert len(sent) == EVENTS
        started = time.monotonic()
        # Then the unlimited hook gets all of them while the limited one is still far from done
        free.wait_until(lambda _: set(sent) <= set(free.delivered_ids()), "every event at the free hook", 60)
        assert len(set(limited.delivered_ids())) < EVENTS / 2
        assert api.get(f"/hooks/{other['id']}").json()["state"] == "active"
        # And the limited hook gets every event, in the end
        limited.wait_until(lambda _: set(sent) <= set(limited.delivered_ids()), "every event at the limited hook",
                           120)
        took = time.monotonic() - started
    arrivals = _events_at(limited)
    busiest = _busiest_window(arrivals, WINDOW)
    db = database.split(":", maxsplit=1)[0]
    print(f"\n[rate] {EVENTS} events at {RATE}/s over 2 worker processes on {db}: took {took:.1f}s, "
          f"busiest {WINDOW:.0f}s window {busiest} events (limit {RATE * WINDOW:.0f}), "
          f"{len(arrivals)} requests")
    # Never more than 10% over the limit in any 10-second window
    assert busiest <= RATE * WINDOW * 1.1
    # And the limit was not reached by sending too little: the hook took about 20 s, not much more
    assert took >= (EVENTS - RATE) / RATE * 0.9


def _operational(receiver: CountingReceiver) -> list[dict[str, Any]]:
    with receiver._changed:
        requests = list(receiver.requests)
    return [e for r in requests for e in orjson.loads(r.body) if e["event_type"] in _OPS]


_OPS = ("hook_paused", "hook_resumed", "hook_stopped_gone", "batch_failed")


def test_a_dead_receiver_pauses_the_hook_is_probed_resumes_and_loses_nothing(
    tmp_path: Path, receivers: list[CountingReceiver]
) -> None:
    dead, relay, gone = receivers
    dead.default = Reply(status=503)
    with postgres_database() as url, running_engine(
        tmp_path, "api", "worker", "worker#2", "scheduler",
        DATABASE_URL=url, BROKER_URL=redis_broker(), WORKER_CONCURRENCY=2,
        HOOK_RETRY_TIMES=50, HOOK_RETRY_PERIOD_SEC=[0.3], HOOK_PAUSE_AFTER_SEC=2, HOOK_PROBE_EVERY_SEC=1,
    ) as engine, engine.client() as api:
        # Given a hook whose receiver is down, which itself also selects the operational events,
        # and a relay hook that selects them (a chat, a pager)
        body = http_hook(dead.url, batch_timeout_sec=0.1, max_batch_size=20)
        body["actions"] = [*body["actions"], *_OPS]
        hook = api.post("/hooks", json=body).json()
        relay_body = {"name": "ops relay", "actions": list(_OPS),
                      "delivery": {"type": "http", "url": relay.url, "batch_timeout_sec": 0.1}}
        relay_hook = api.post("/hooks", json=relay_body).json()
        assert api.get(f"/hooks/{hook['id']}").json()["state"] == "active"
        sent = post_events(api, [f"pause-{i}" for i in range(100)], per_request=50)
        # When its receiver has failed every attempt for HOOK_PAUSE_AFTER_SEC
        shown = poll(lambda: (h := api.get(f"/hooks/{hook['id']}").json())["state"] == "paused" and h,
                     "the hook to be paused", timeout=30)
        assert shown["paused_since"] is not None
        # Then it keeps capturing while paused
        sent += post_events(api, [f"paused-{i}" for i in range(100)], per_request=50)
        # And it is probed with one batch about every HOOK_PROBE_EVERY_SEC, not hammered
        before = len(dead.requests)
        time.sleep(4)  # an observation period, not synchronisation: counting the probes in it
        probes = len(dead.requests) - before
        assert 1 <= probes <= 4 + 2, probes
        # When the receiver comes back
        dead.default = Reply(status=200)
        # Then the hook resumes and everything captured meanwhile is delivered, nothing failed-listed
        dead.wait_until(lambda _: set(sent) <= set(dead.delivered_ids()), "every event delivered", 60)
        poll(lambda: api.get(f"/hooks/{hook['id']}").json()["state"] == "active", "the hook to resume", timeout=20)
        assert api.get(f"/hooks/{hook['id']}").json()["paused_since"] is None
        assert api.get(f"/hooks/{hook['id']}/failed").json() == []
        # And the relay hook was told both, with the hook's id and name and the error that paused it
        told = poll(lambda: {e["event_type"]: e for e in _operational(relay)}.keys() >= {"hook_paused", "hook_resumed"}
                    and {e["event_type"]: e for e in _operational(relay)}, "hook_paused and hook_resumed", 30)
        paused = told["hook_paused"]
        assert paused["account_id"] == 23
        assert paused["event_data"]["hook_id"] == hook["id"]
        assert paused["event_data"]["hook_name"] == "test hook"
        assert "503" in paused["event_data"]["error"]
        assert told["hook_resumed"]["event_data"]["hook_id"] == hook["id"]
        # And the hook itself never received an event about itself
        assert [e for e in _operational(dead) if e["event_data"]["hook_id"] == hook["id"]] == []

        # Given a hook whose receiver answers 410 Gone
        gone.default = Reply(status=410, body=b"gone for good")
        gone_hook = api.post("/hooks", json=http_hook(gone.url, batch_timeout_sec=0.1)).json()
        gone_sent = post_events(api, [f"gone-{i}" for i in range(10)])
        # Then it is stopped at once: one request, state "stopped", nothing in its failed list
        poll(lambda: api.get(f"/hooks/{gone_hook['id']}").json()["state"] == "stopped", "410 to stop the hook", 30)
        told = poll(lambda: [e for e in _operational(relay) if e["event_type"] == "hook_stopped_gone"],
                    "hook_stopped_gone at the relay", 30)
        assert told[0]["event_data"]["hook_id"] == gone_hook["id"]
        assert "410" in told[0]["event_data"]["error"]
        post_events(api, [f"after-gone-{i}" for i in range(10)])
        time.sleep(1.5)  # an observation period: no new request may reach the gone receiver
        assert len(gone.requests) == 1
        assert api.get(f"/hooks/{gone_hook['id']}/failed").json() == []
        # And starting it again (the receiver is back) delivers what waited, nothing lost
        gone.default = Reply(status=200)
        assert api.patch(f"/hooks/{gone_hook['id']}", json={"active": True}).status_code == 200
        gone.wait_until(lambda _: set(gone_sent) <= set(gone.delivered_ids()), "the gone hook's events", 30)
        assert api.get(f"/hooks/{relay_hook['id']}").json()["state"] == "active"


def test_a_batch_reaching_the_failed_list_is_told_to_other_hooks(
    tmp_path: Path, receivers: list[CountingReceiver]
) -> None:
    rejecting, relay, _ = receivers
    rejecting.answer(Reply(status=422, body=b"bad payload"))
    with running_engine(
        tmp_path, "api", "worker", "scheduler", HOOK_PERMANENT_STATUS_CODES=[422],
    ) as engine, engine.client() as api:
        hook = api.post("/hooks", json=http_hook(rejecting.url, batch_timeout_sec=0.1)).json()
        relay_body = {"name": "ops relay", "actions": ["batch_failed"],
                      "delivery": {"type": "http", "url": relay.url, "batch_timeout_sec": 0.1}}
        api.post("/hooks", json=relay_body)
        post_events(api, ["failing-1", "failing-2"])
        told = poll(lambda: _operational(relay), "batch_failed at the relay", 30)
        failed = api.get(f"/hooks/{hook['id']}/failed").json()
        assert len(failed) == 1
        data = told[0]["event_data"]
        assert (told[0]["event_type"], data["hook_id"], data["batch_id"], data["n_events"]) == (
            "batch_failed", hook["id"], failed[0]["id"], 2)
        assert "422" in data["error"]
