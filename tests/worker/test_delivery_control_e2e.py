"""Payload filters and OAuth2 end to end: real API, worker and scheduler, real receiver and token server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support.engine import Engine, event, http_hook, redis_broker, running_engine
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.slow


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with running_engine(tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker()) as eng:
        yield eng


def delivered(receiver: Receiver, path: str) -> list[dict[str, object]]:
    return [e for r in receiver.requests if r.path == path for e in orjson.loads(r.body)]


def test_a_hook_with_payload_filters_receives_only_matching_events(engine: Engine, receiver: Receiver) -> None:
    base = f"http://127.0.0.1:{receiver.port}"
    filtered = http_hook(f"{base}/pro", batch_timeout_sec=0.2)
    filtered["filters"] = {"match": [
        {"path": "event_data.params.plan", "op": "in", "value": ["pro", "enterprise"]},
        {"path": "event_data.params.seats", "op": "gte", "value": 10},
        {"path": "profile_id", "op": "prefix", "value": "profile-"},
    ]}
    with engine.client() as api:
        assert api.post("/hooks", json=filtered).status_code == 201
        # A hook without filters sees every event: when it has them all, routing is done.
        assert api.post("/hooks", json=http_hook(f"{base}/all", batch_timeout_sec=0.2)).status_code == 201
        plans = [("pro", 10), ("pro", 9), ("free", 50), ("enterprise", 200), (None, 20), ("PRO", 10), ("pro", "10")]
        sent = []
        for i, (plan, seats) in enumerate(plans):
            params = {"seats": seats} if plan is None else {"plan": plan, "seats": seats}
            ev = event(i)
            ev["event_data"] = {**ev["event_data"], "params": params}
            sent.append(ev)
        assert api.post("/events", json=sent).status_code == 202
    receiver.wait_until(lambda _: len(delivered(receiver, "/all")) == len(sent), "every event at /all", 30)
    receiver.wait_until(lambda _: len(delivered(receiver, "/pro")) >= 2, "the matching events at /pro", 30)
    assert sorted(str(e["profile_id"]) for e in delivered(receiver, "/pro")) == ["profile-0", "profile-3"]


def test_an_oauth2_hook_fetches_one_token_for_many_batches_and_renews_it_after_a_401(
    engine: Engine, receiver: Receiver
) -> None:
    tokens = Receiver()
    try:
        tokens.answer(Reply(body=b'{"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}'))
        tokens.default = Reply(body=b'{"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600}')
        hook = http_hook(receiver.url, max_batch_size=2, batch_timeout_sec=0)
        hook["delivery"]["auth"] = {
            "type": "oauth2_client_credentials", "token_url": f"http://127.0.0.1:{tokens.port}/token",
            "client_id": "engine", "client_secret": "s3cret", "scope": "hooks",
        }
        with engine.client() as api:
            assert api.post("/hooks", json=hook).status_code == 201
            for i in range(4):
                assert api.post("/events", json=[event(2 * i), event(2 * i + 1)]).status_code == 202
            first = receiver.wait_for(4, timeout=30)
            assert {r.headers["authorization"] for r in first} == {"Bearer tok-1"}
            assert len(tokens.requests) == 1  # one worker process (threads): one token for every batch
            # The receiver revokes the token: one new token, the batch is sent again at once with it.
            receiver.answer(Reply(status=401, body=b"revoked"))
            assert api.post("/events", json=[event(8), event(9)]).status_code == 202
            requests = receiver.wait_for(6, timeout=30)
        assert [r.headers["authorization"] for r in requests[4:]] == ["Bearer tok-1", "Bearer tok-2"]
        assert len(tokens.requests) == 2
    finally:
        tokens.close()
