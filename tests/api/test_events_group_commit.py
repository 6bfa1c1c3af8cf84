"""POST /events through a served API (uvicorn in its own process) shares the group commit's transactions.

- Concurrent requests are made durable in fewer transactions than requests (the batch-size histogram
  of /metrics says how many), each request answered with its own outcome, on SQLite and PostgreSQL.
- An account whose writes fail (a trigger in the database refuses its intake rows) never fails another
  account's concurrent requests, and a request that cannot be stored never fails the others of its
  own account that shared its transaction.
- A full waiting room answers 503 + Retry-After at once, counted in /metrics, and stores nothing.
- While the API shuts down, a request under way is still committed and answered 202; one arriving
  then answers 503 + Retry-After at once (`shutting_down`) and stores nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine as Database
from sqlalchemy import create_engine, text

from actionhooks.api.app import create_app
from actionhooks.settings import Settings
from actionhooks.storage.tokens import create_token
from tests.support.engine import Engine, event, poll, postgres_database, running_engine

CLIENTS = 8
REQUESTS_PER_CLIENT = 8
EVENTS_PER_REQUEST = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine running only its API, on a new SQLite file or a new PostgreSQL database."""
    with ExitStack() as stack:
        overrides = {"DATABASE_URL": stack.enter_context(postgres_database("actionhooks_group"))} \
            if request.param == "postgresql" else {}
        yield stack.enter_context(running_engine(tmp_path, "api", **overrides))


def metric(engine: Engine, name: str) -> float:
    """A sample of the API's /metrics (0 when absent)."""
    page = httpx.get(f"{engine.base_url}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(page) for s in family.samples if s.name == name)


def concurrently(*senders: Callable[[], Any]) -> list[Any]:
    """Run each sender in its own thread, released together; their results in order (or what they raised)."""
    results: list[Any] = [None] * len(senders)
    start = threading.Barrier(len(senders))

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = senders[index]()
        except Exception as exc:  # reported to the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(senders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def posts(engine: Engine, account_id: int, bodies: list[list[dict[str, Any]]]) -> Callable[[], list[httpx.Response]]:
    """A sender posting `bodies` one after the other on one keep-alive connection."""
    return post_raw(engine, account_id, [orjson.dumps(body) for body in bodies])


def post_raw(engine: Engine, account_id: int, bodies: list[bytes]) -> Callable[[], list[httpx.Response]]:
    def send() -> list[httpx.Response]:
        with engine.client(account_id) as client:
            return [client.post("/events", content=body, headers={"Content-Type": "application/json"})
                    for body in bodies]
    return send


def stored_ids(engine: Engine) -> list[str]:
    db = create_engine(engine.config["DATABASE_URL"])
    try:
        with db.connect() as conn:
            return [e["event_id"] for (blob,) in conn.execute(text("SELECT events FROM intake ORDER BY id"))
                    for e in orjson.loads(blob)]
    finally:
        db.dispose()


def test_concurrent_requests_share_transactions_and_each_gets_its_own_answer(api: Engine) -> None:
    # Given 8 clients, each sending 8 requests of 20 events with ids of its own
    def bodies(client: int) -> list[list[dict[str, Any]]]:
        return [[event(n, event_id=f"c{client}-r{r}-{n}") for n in range(EVENTS_PER_REQUEST)]
                for r in range(REQUESTS_PER_CLIENT)]

    api.token(23)  # made before the clients start together
    # When they post at the same time
    answers = concurrently(*(posts(api, 23, bodies(c)) for c in range(CLIENTS)))
    # Then every request is answered 202 with its own events, all queued ...
    for client, responses in enumerate(answers):
        assert [r.status_code for r in responses] == [202] * REQUESTS_PER_CLIENT, responses
        for r, response in enumerate(responses):
            assert response.json()["ids"] == [f"c{client}-r{r}-{n}" for n in range(EVENTS_PER_REQUEST)]
            assert (response.json()["queued"], response.json()["duplicates"]) == (EVENTS_PER_REQUEST, [])
    requests = CLIENTS * REQUESTS_PER_CLIENT
    assert len(stored_ids(api)) == requests * EVENTS_PER_REQUEST
    # ... and the requests were made durable in fewer transactions than requests
    assert metric(api, "actionhooks_intake_commit_batch_requests_sum") == requests
    transactions = metric(api, "actionhooks_intake_commit_batch_requests_count")
    assert 1 <= transactions < requests
    assert metric(api, "actionhooks_intake_commit_batch_events_sum") == requests * EVENTS_PER_REQUEST


def test_a_failing_account_or_request_never_fails_another_accounts_or_requests(tmp_path: Path) -> None:
    with running_engine(tmp_path, "api") as engine:
        engine.token(66), engine.token(23)  # the database exists (migrated) before the trigger goes in
        with sqlite3.connect(tmp_path / "data" / "actionhooks.db") as db:  # the database refuses account 66
            db.execute("CREATE TRIGGER refuse BEFORE INSERT ON intake WHEN NEW.account_id = 66 "
                       "BEGIN SELECT RAISE(ABORT, 'account 66 refused'); END")
        # 300 levels parse (orjson reads 1,024) but cannot be stored (orjson writes 254): a 422 at write time
        deep = [orjson.dumps([event(n, event_id=f"deep-{n}", event_data={"x": "DEEP"})]).replace(
            b'"DEEP"', b"[" * 300 + b"]" * 300) for n in range(3)]
        # Given account 23's clients, account 66's, and requests of account 23 that cannot be stored
        # (account 66's each on a new connection: uvicorn closes one after an unhandled error's 500)
        answers = concurrently(
            lambda: [posts(engine, 66, [[event(n, account_id=66, event_id=f"no-{n}")]])()[0] for n in range(10)],
            post_raw(engine, 23, deep),
            *(posts(engine, 23, [[event(n, event_id=f"ok-{c}-{n}")] for n in range(10)]) for c in range(5)),
        )
        # When they post at the same time
        failed, unstorable, *fine = answers
        # Then only the failing ones failed; account 23's others were all stored
        assert all(r.status_code >= 500 for r in failed), failed
        assert [r.status_code for r in unstorable] == [422] * 3
        assert all(r.status_code == 202 for responses in fine for r in responses), fine
        assert sorted(stored_ids(engine)) == sorted(f"ok-{c}-{n}" for c in range(5) for n in range(10))
        assert metric(engine, "actionhooks_intake_commit_batch_requests_sum") == 50
        assert metric(engine, "actionhooks_intake_commit_batch_requests_count") < 50  # and they shared transactions


def test_a_full_waiting_room_is_503_with_retry_after_counted_and_nothing_is_stored(
    app: FastAPI, client: Any, ingest: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actionhooks.storage.committer.MAX_WAITING_PER_ACCOUNT", 0)  # full for every account
    response = client.post("/api/v1/events", json=[event(1, account_id=1)], headers=ingest)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"][0]["type"] == "overloaded"
    assert "actionhooks_events_overloaded_requests_total 1.0" in client.get("/metrics").text
    with app.state.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM intake")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM seen_events")).scalar() == 0


# PostgreSQL: a writer waiting for a lock shows in pg_stat_activity
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_while_the_api_shuts_down_a_request_under_way_is_committed_and_a_new_one_is_503(
    engine: Database, tmp_path: Path
) -> None:
    app = create_app(Settings(DATABASE_URL=engine.url.render_as_string(hide_password=False), DATA_DIR=str(tmp_path)),
                     engine=engine)
    ingest = {"Authorization": f"Bearer {create_token(app.state.sessions, 1, 'ingest')}"}
    with TestClient(app) as client, ThreadPoolExecutor(1) as sender, engine.connect() as locker:
        # Given a request whose commit is under way (it waits for a lock another session holds on intake)
        locker.exec_driver_sql("LOCK TABLE intake IN EXCLUSIVE MODE")
        under_way = sender.submit(client.post, "/api/v1/events", json=[event(1, account_id=1)], headers=ingest)
        poll(lambda: waiting_for_a_lock(engine), "the request's commit to wait for the lock")
        # When the API shuts down (its lifespan closes the committer; started on the app's loop before the next request)
        closing = client.portal.start_task_soon(app.state.committer.close)
        late = client.post("/api/v1/events", json=[event(2, account_id=1)], headers=ingest)
        # Then a request arriving meanwhile is refused at once: 503 + Retry-After, its own type, not counted as overload
        assert late.status_code == 503, late.text
        assert late.headers["retry-after"] == "5"
        assert late.json()["detail"][0]["type"] == "shutting_down"
        assert "actionhooks_events_overloaded_requests_total 0.0" in client.get("/metrics").text
        assert not closing.done()  # and the shutdown waits for the commit under way
        locker.rollback()
        # Then the request under way is committed and answered; the late one stored nothing
        assert under_way.result(timeout=30).status_code == 202
        closing.result(timeout=30)
        with engine.connect() as conn:
            stored = [e["event_id"] for (blob,) in conn.execute(text("SELECT events FROM intake"))
                      for e in orjson.loads(blob)]
        assert stored == under_way.result().json()["ids"]


def waiting_for_a_lock(engine: Database) -> bool:
    with engine.connect() as conn:  # a new transaction: pg_stat_activity is read once per transaction
        return conn.exec_driver_sql("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND wait_event_type = 'Lock'").first() is not None
