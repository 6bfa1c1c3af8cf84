"""Receivers that misbehave: too slow for HOOK_HTTP_TIMEOUT_SEC, flapping, and down longer than all retries.

One engine for the module (each test has its own hook, receiver and event ids).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.engine import Engine, free_port, http_hook, poll, redis_broker, running_engine
from tests.support.faults import DROP, CountingReceiver, failed_ids, post_events, report, settle, tally
from tests.support.receiver import Reply

pytestmark = pytest.mark.slow

TIMEOUT_SEC = 1
ATTEMPTS = 4


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder: Path = tmp_path_factory.mktemp("receiver-faults")
    with running_engine(
        folder, "api", "worker", "scheduler",
        BROKER_URL=redis_broker(), WORKER_CONCURRENCY=2,
        HOOK_HTTP_TIMEOUT_SEC=TIMEOUT_SEC, HOOK_RETRY_TIMES=ATTEMPTS, HOOK_RETRY_PERIOD_SEC=[0.5],
    ) as eng:
        yield eng


@pytest.fixture
def api(engine: Engine) -> Iterator[httpx.Client]:
    with engine.client() as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[CountingReceiver]:
    server = CountingReceiver()
    try:
        yield server
    finally:
        server.close()


def test_a_receiver_slower_than_the_timeout_gets_everything_with_timeouts_retried(
    engine: Engine, api: httpx.Client, receiver: CountingReceiver
) -> None:
    # Given a receiver whose first 6 answers come after the 1 s timeout (it still takes those batches)
    slow = 6
    receiver.answer(*[Reply(delay=TIMEOUT_SEC + 0.5)] * slow)
    hook = api.post("/hooks", json=http_hook(receiver.url, max_batch_size=50, batch_timeout_sec=0.2)).json()
    sent = post_events(api, [f"slow-{i}" for i in range(300)])
    # Then every event arrives: the timeouts were failed attempts, retried
    result = settle(engine, api, hook["id"], sent, delivered=receiver.delivered_ids, timeout=60)
    report(f"receiver slower than HOOK_HTTP_TIMEOUT_SEC for {slow} requests", result)
    assert result.lost == []
    assert result.failed_listed == 0
    errors = [a for a in api.get(f"/hooks/{hook['id']}/attempts").json() if a["outcome"] == "error"]
    assert len(errors) == slow
    assert all("timed out" in a["error"].lower() or "timeout" in a["error"].lower() for a in errors), errors
    # And the only duplicates are the batches the receiver took but answered too late
    late = sum(len(orjson.loads(r.body)) for r in receiver.requests[:slow])
    assert result.duplicates == late


def test_a_flapping_receiver_gets_everything_without_duplicates(
    engine: Engine, api: httpx.Client, receiver: CountingReceiver
) -> None:
    # Given a receiver that fails every other request: a 500, or a connection closed without an answer
    flaps = itertools.cycle([Reply(status=500), Reply(), Reply(status=DROP), Reply()])
    receiver.answer(*itertools.islice(flaps, 400))
    hook = api.post("/hooks", json=http_hook(receiver.url, max_batch_size=20, batch_timeout_sec=0.2)).json()
    sent = post_events(api, [f"flap-{i}" for i in range(400)])
    result = settle(engine, api, hook["id"], sent, delivered=receiver.delivered_ids, timeout=60)
    report("flapping receiver (500 / 200 / dropped connection / 200 ...)", result)
    # Then every event is delivered, or failed-listed if one batch drew only failures
    assert result.lost == []
    # And a batch the receiver refused was not taken, so nothing arrives twice
    assert result.duplicates == 0
    # And what was failed-listed is delivered by a replay to the (now steady) receiver
    api.post(f"/hooks/{hook['id']}/failed/replay", json={})
    replayed = settle(engine, api, hook["id"], sent, delivered=receiver.delivered_ids, timeout=30)
    assert (replayed.delivered, replayed.duplicates, replayed.failed_listed) == (len(sent), 0, 0)


def test_a_receiver_down_longer_than_all_retries_fills_the_failed_list_and_replay_delivers_it(
    engine: Engine, api: httpx.Client
) -> None:
    # Given a receiver that is down (nothing listens on its port) for longer than all attempts
    port = free_port()
    hook = api.post(
        "/hooks", json=http_hook(f"http://127.0.0.1:{port}/hook", max_batch_size=50, batch_timeout_sec=0.2)
    ).json()
    sent = post_events(api, [f"down-{i}" for i in range(200)])
    # Then, attempts used up, every event sits in the hook's failed list
    in_failed = poll(
        lambda: (ids := failed_ids(api, hook["id"])) and set(ids) == set(sent) and ids,
        "every event in the failed list", timeout=30,
    )
    down = tally(sent, [], in_failed)
    report("receiver down longer than all retries", down)
    assert down.failed_listed == len(sent)
    assert len(in_failed) == len(sent)
    failed = api.get(f"/hooks/{hook['id']}/failed").json()
    assert {batch["attempts"] for batch in failed} == {ATTEMPTS}
    # When the receiver comes back and the failed list is replayed
    receiver = CountingReceiver(port=port)
    try:
        assert api.post(f"/hooks/{hook['id']}/failed/replay", json={}).json() == {"replayed": len(failed)}
        result = settle(engine, api, hook["id"], sent, delivered=receiver.delivered_ids, timeout=30)
    finally:
        receiver.close()
    report("after the receiver came back and the failed list was replayed", result)
    # Then everything is delivered once and the failed list is empty
    assert result.delivered == len(sent)
    assert result.duplicates == 0
    assert failed_ids(api, hook["id"]) == []
