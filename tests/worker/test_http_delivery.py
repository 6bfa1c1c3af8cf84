"""HTTP delivery end to end: real API, worker and scheduler processes, a real receiver on loopback."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.engine import Engine, event, http_hook, poll, postgres_database, redis_broker, running_engine
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.slow




@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The engine on Redis, with SQLite and with PostgreSQL storage."""
    if request.param == "sqlite":
        with running_engine(tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker()) as eng:
            yield eng
    else:
        with (
            postgres_database() as url,
            running_engine(tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker(), DATABASE_URL=url) as eng,
        ):
            yield eng


def _bodies(receiver: Receiver) -> list[list[dict[str, object]]]:
    return [orjson.loads(r.body) for r in receiver.requests]


def test_batches_form_by_size_and_by_time_across_requests(engine: Engine, receiver: Receiver) -> None:
    # Given a hook batching 5 events with a 1 s window
    with engine.client() as api:
        hook = api.post("/hooks", json=http_hook(receiver.url, max_batch_size=5, batch_timeout_sec=1)).json()
        # When 7 events arrive in three separate requests
        sent = [event(i) for i in range(7)]
        for chunk in (sent[:3], sent[3:5], sent[5:]):
            assert api.post("/events", json=chunk).status_code == 202
    # Then one full batch of 5 leaves at once and the other 2 after the window
    first = receiver.wait_for(1, timeout=15)
    assert len(orjson.loads(first[0].body)) == 5
    requests = receiver.wait_for(2, timeout=15)
    assert [len(b) for b in _bodies(receiver)] == [5, 2]
    assert requests[1].headers["x-hook-id"] == str(hook["id"])
    # And every event arrived once, exactly as captured plus its identity
    delivered = [e for body in _bodies(receiver) for e in body]
    assert sorted(e["profile_id"] for e in delivered) == sorted(e["profile_id"] for e in sent)
    for got in delivered:
        original = next(e for e in sent if e["profile_id"] == got["profile_id"])
        assert {k: v for k, v in got.items() if k != "event_id"} == original


def test_a_batch_window_closes_on_time_even_with_one_event(engine: Engine, receiver: Receiver) -> None:
    with engine.client() as api:
        api.post("/hooks", json=http_hook(receiver.url, max_batch_size=100, batch_timeout_sec=1))
        accepted_at = time.monotonic()
        assert api.post("/events", json=event(1)).status_code == 202
    receiver.wait_for(1, timeout=10)  # not held for a fuller batch, nor left for the 30 s full sweep
    waited = time.monotonic() - accepted_at
    assert waited >= 0.9, waited  # and the window was kept: it did not go out at once


def test_the_remainder_of_a_cut_opens_a_window_that_closes_on_its_own_trigger_without_the_scheduler(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Given no scheduler (nothing that would find a window by looking), batches of 10 and a 1 s window
    with running_engine(tmp_path, "api", "worker") as engine, engine.client() as api:
        api.post("/hooks", json=http_hook(receiver.url, max_batch_size=10, batch_timeout_sec=1))
        # When one request brings 15 events: a full batch is cut at once, 5 open a new window
        posted = time.monotonic()
        assert api.post("/events", json=[event(n) for n in range(15)]).status_code == 202
        # Then the 5 go out when their window closes, on the trigger routing sent for it
        first, second = receiver.wait_for(2, timeout=15)
    assert [len(orjson.loads(r.body)) for r in (first, second)] == [10, 5]
    assert second.received_at - posted >= 1.0  # the window was kept, not flushed with the cut


def test_requests_are_signed_so_receivers_can_verify_them(engine: Engine, receiver: Receiver) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with engine.client() as api:
        api.post(
            "/hooks",
            json=http_hook(receiver.url, batch_timeout_sec=0, signing_secret=secret, headers={"X-Tenant": "acme"}),
        )
        api.post("/events", json=[event(1)])
    request = receiver.wait_for(1, timeout=10)[0]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-tenant"] == "acme"
    Webhook(secret).verify(request.body, request.headers)  # raises when the signature is wrong


def test_failed_attempts_are_retried_as_configured_then_dead_lettered_and_replayable(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Given 3 attempts, 1 s then 2 s apart, and a receiver that always fails
    receiver.default = Reply(status=500, body=b"broken")
    with (
        running_engine(
            tmp_path,
            "api",
            "worker",
            "scheduler",
            BROKER_URL=redis_broker(),
            HOOK_RETRY_TIMES=3,
            HOOK_RETRY_PERIOD_SEC=[1, 2],
        ) as engine,
        engine.client() as api,
    ):
        hook = api.post("/hooks", json=http_hook(receiver.url, batch_timeout_sec=0)).json()
        api.post("/events", json=[event(1), event(2)])
        # Then exactly 3 attempts are made, never before their period (1 s, then 2 s, each ±10% jitter),
        # and not left for a late sweep: within wait_for's deadline (generous: a loaded CI machine adds
        # seconds to the 0.2 s scheduler tick, and this is not a speed check)
        requests = receiver.wait_for(3, timeout=20)
        failed = poll(lambda: api.get(f"/hooks/{hook['id']}/failed").json(), "the failed list", timeout=10)
        times = [r.received_at for r in requests]
        assert times[1] - times[0] >= 0.9
        assert times[2] - times[1] >= 1.8  # longer than the first period's most: the second period applied
        time.sleep(2.5)  # a 4th attempt would have come by now; prove it does not
        assert len(receiver.requests) == 3
        assert len({r.headers["webhook-id"] for r in requests}) == 1  # one batch, stable id
        assert failed[0]["attempts"] == 3
        assert failed[0]["last_status_code"] == 500
        assert "500" in failed[0]["last_error"]
        assert failed[0]["n_events"] == 2
        attempts = api.get(f"/hooks/{hook['id']}/attempts").json()
        assert [a["outcome"] for a in attempts] == ["error"] * 3
        assert [a["attempt"] for a in attempts] == [3, 2, 1]
        # When the receiver recovers and the batch is replayed
        receiver.default = Reply(status=200)
        assert api.post(f"/hooks/{hook['id']}/failed/replay", json={}).json() == {"replayed": 1}
        # Then it is delivered and leaves the failed list
        receiver.wait_for(4, timeout=10)
        poll(lambda: api.get(f"/hooks/{hook['id']}/failed").json() == [], "an empty failed list", timeout=10)
        assert orjson.loads(receiver.requests[3].body) == orjson.loads(requests[0].body)


def test_retry_after_from_the_receiver_is_respected_within_the_period_bounds(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.answer(Reply(status=503, headers={"Retry-After": "3"}))
    with (
        running_engine(
            tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker(), HOOK_RETRY_PERIOD_SEC=[1, 5]
        ) as engine,
        engine.client() as api,
    ):
        api.post("/hooks", json=http_hook(receiver.url, batch_timeout_sec=0))
        api.post("/events", json=[event(1)])
        first, second = receiver.wait_for(2, timeout=15)
    # Retry-After's 3 s (jitter only ever lengthens it), not the first period's 1 s
    assert second.received_at - first.received_at >= 2.8


def test_a_stopped_hook_captures_nothing_and_changes_reach_the_running_worker(
    engine: Engine, receiver: Receiver
) -> None:
    other = Receiver()
    try:
        with engine.client() as api:
            hook = api.post("/hooks", json=http_hook(receiver.url, batch_timeout_sec=0)).json()
            api.post("/events", json=[event(1)])
            receiver.wait_for(1, timeout=10)
            # When the hook is stopped, events are not captured
            assert api.post(f"/hooks/{hook['id']}/stop").status_code == 200
            api.post("/events", json=[event(2)])
            # And when it is pointed elsewhere and activated, the running worker follows within seconds
            changed = api.patch(f"/hooks/{hook['id']}", json={"delivery": {"url": other.url}})
            assert changed.status_code == 200, changed.text
            assert api.post(f"/hooks/{hook['id']}/activate").json()["active"] is True
            assert api.post("/events", json=[event(3)]).status_code == 202
            got = other.wait_for(1, timeout=10)
        assert [e["profile_id"] for e in orjson.loads(got[0].body)] == ["profile-3"]
        assert len(receiver.requests) == 1
    finally:
        other.close()


def test_an_event_id_accepted_twice_is_delivered_once(engine: Engine, receiver: Receiver) -> None:
    with engine.client() as api:
        api.post("/hooks", json=http_hook(receiver.url, batch_timeout_sec=0.5))
        first = api.post("/events", json=[event(1, event_id="evt-1"), event(2, event_id="evt-2")]).json()
        again = api.post("/events", json=[event(1, event_id="evt-1")]).json()
        api.post("/events", json=[event(3, event_id="evt-3")])
    assert first["ids"] == ["evt-1", "evt-2"]
    assert first["queued"] == 2
    assert again == {"accepted": 1, "queued": 0, "duplicates": ["evt-1"], "ids": ["evt-1"]}
    receiver.wait_until(lambda rs: sum(len(orjson.loads(r.body)) for r in rs) >= 3, "3 events", timeout=10)
    time.sleep(1.5)  # anything duplicated would have been sent by now
    ids = [e["event_id"] for body in _bodies(receiver) for e in body]
    assert sorted(ids) == ["evt-1", "evt-2", "evt-3"]


def test_a_worker_killed_mid_delivery_loses_no_event(tmp_path: Path, receiver: Receiver) -> None:
    # Given a receiver that holds its first answer long enough to kill the worker during the send
    receiver.answer(Reply(status=200, delay=30))
    with (
        running_engine(
            tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker(), HOOK_HTTP_TIMEOUT_SEC=1
        ) as engine,
        engine.client() as api,
    ):
        hook = api.post("/hooks", json=http_hook(receiver.url, batch_timeout_sec=0)).json()
        api.post("/events", json=[event(i) for i in range(10)])
        first = receiver.wait_for(1, timeout=10)[0]
        # When the worker is killed with SIGKILL mid-send and a new one starts
        engine.kill("worker", signal.SIGKILL)
        engine.start("worker")
        # Then the same batch is sent again once its lease passes, and counted as attempt 2
        second = receiver.wait_for(2, timeout=30)[1]
        assert second.headers["webhook-id"] == first.headers["webhook-id"]
        assert orjson.loads(second.body) == orjson.loads(first.body)
        attempts = poll(
            lambda: [a for a in api.get(f"/hooks/{hook['id']}/attempts").json() if a["outcome"] == "ok"],
            "a successful attempt",
        )
        assert attempts[0]["attempt"] == 2


def test_get_mode_sends_each_event_alone_and_an_oversized_url_fails_once(tmp_path: Path, receiver: Receiver) -> None:
    with (
        running_engine(tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker()) as engine,
        engine.client() as api,
    ):
        hook = api.post("/hooks", json=http_hook(receiver.url, method="GET")).json()
        huge = event(9, event_data={"campaign_id": 973, "link_url": "x" * 9000})
        api.post("/events", json=[event(1), event(2), huge, event(3)])
        requests = receiver.wait_for(3, timeout=15)
        failed = poll(lambda: api.get(f"/hooks/{hook['id']}/failed").json(), "the oversized event to fail", 15)
    assert sorted(r.query["profile_id"][0] for r in requests) == ["profile-1", "profile-2", "profile-3"]
    assert {r.method for r in requests} == {"GET"}
    assert failed[0]["attempts"] == 1  # a payload error is never retried
    assert "PayloadError" in failed[0]["last_error"]
    assert failed[0]["events"][0]["profile_id"] == "profile-9"
    assert len(receiver.requests) == 3
