"""/healthz and /metrics: a liveness signal that means progress, read from the database.

In process: the figures follow the rows that stand for waiting work, and the API's own request
metrics. End to end: a stopped worker makes the oldest queued age grow while events wait; a worker
that starts again brings it back to zero and moves the last delivery time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine as SqlEngine
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.api.app import create_app
from actionhooks.observability.cache import CACHE_SEC
from actionhooks.settings import Settings
from actionhooks.storage.db import make_engine, session_factory
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.monitoring import measure
from actionhooks.storage.tables import Attempt, Delivery, Hook, Intake, Outbox
from actionhooks.storage.tokens import create_token
from tests.support.engine import (
    PG_ADMIN,
    Engine,
    event,
    http_hook,
    poll,
    postgres_database,
    redis_broker,
    running_engine,
)
from tests.support.receiver import Receiver

EMPTY_DETAILS = {
    "oldest_queued_age_sec": 0.0, "last_delivery_at": None, "pending_batches": 0, "failed_batches": 0,
    "intake_events": 0, "quarantined_events": 0,
}


def gauges(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text page, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_healthz_answers_without_a_token_with_the_progress_details(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}, "details": EMPTY_DETAILS}


def test_healthz_is_503_when_the_database_is_gone(app: FastAPI, client: TestClient, tmp_path: Path) -> None:
    app.state.engine.dispose()
    (tmp_path / "api.db").unlink()
    (tmp_path / "api.db").mkdir()  # a directory where the database file was: SQLite cannot open it
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "checks": {"database": "error: OperationalError"}}
    assert "actionhooks_oldest_queued_age_seconds" not in client.get("/metrics").text  # no made-up figures


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, app: FastAPI) -> Iterator[tuple[SqlEngine, sessionmaker[Session], int]]:
    """A migrated database (the app's SQLite one, or a fresh PostgreSQL one) and a hook in it."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            engine = app.state.engine
        else:
            engine = make_engine(Settings(DATABASE_URL=stack.enter_context(postgres_database())).database_url)
            stack.callback(engine.dispose)
            upgrade(engine)
        sessions = session_factory(engine)
        with sessions() as session:
            hook = Hook(account_id=1, name="h", actions=["click"], filters={}, custom_data={}, delivery={})
            session.add(hook)
            session.commit()
        yield engine, sessions, hook.id


def _delivery(hook_id: int, **fields: Any) -> Delivery:
    row = {"id": uuid.uuid4().hex, "hook_id": hook_id, "account_id": 1, "events": b"[]", "n_events": 1,
           "status": "pending", "attempts": 0, "lease_until": 0.0, "created_at": 0.0, **fields}
    return Delivery(**row)


def test_the_oldest_queued_age_is_that_of_the_oldest_waiting_work_of_any_kind(
    store: tuple[SqlEngine, sessionmaker[Session], int],
) -> None:
    engine, sessions, hook_id = store
    now = 1_000_000.0
    with sessions() as session:
        session.add_all([
            Intake(account_id=1, events=b"[]", n_events=3, created_at=now - 30),  # unrouted for 30 s
            Intake(account_id=1, events=b"[]", n_events=2, created_at=now - 5),
            _delivery(hook_id, next_attempt_at=now - 10),  # due for 10 s
            _delivery(hook_id, next_attempt_at=now - 15, lease_until=now + 40),  # leased (a dead worker's?): waits
            _delivery(hook_id, next_attempt_at=now + 60),  # a retry later: not due
            _delivery(hook_id, next_attempt_at=now - 900, status="failed"),  # the failed list is not a queue
            Outbox(hook_id=hook_id, events=b"[]", n_events=1, created_at=now - 70, due_at=now - 20),  # overdue 20 s
            Attempt(hook_id=hook_id, delivery_id="a", attempt=1, started_at=now - 40, outcome="ok", n_events=1),
            Attempt(hook_id=hook_id, delivery_id="b", attempt=1, started_at=now - 3, outcome="error", n_events=1),
        ])
        session.commit()
    live = measure(engine, now=now)
    assert live.oldest_queued_age_sec == 30
    assert live.last_delivery_at == now - 40  # the latest success, not the latest attempt
    assert (live.pending_batches, live.failed_batches, live.intake_events) == (3, 1, 5)
    # each kind alone drives it
    with sessions() as session:
        session.query(Intake).delete()
        session.commit()
    assert measure(engine, now=now).oldest_queued_age_sec == 20  # the overdue window
    with sessions() as session:
        session.query(Outbox).delete()
        session.commit()
    assert measure(engine, now=now).oldest_queued_age_sec == 15  # the leased batch: waiting whoever leased it
    with sessions() as session:
        session.query(Delivery).filter(Delivery.lease_until > now).delete()
        session.commit()
    assert measure(engine, now=now).oldest_queued_age_sec == 10  # the due batch


def test_healthz_details_are_cached_for_a_couple_of_seconds(app: FastAPI, client: TestClient) -> None:
    assert client.get("/healthz").json()["details"]["intake_events"] == 0
    with app.state.sessions() as session:
        session.add(Intake(account_id=1, events=b"[]", n_events=7, created_at=time.time()))
        session.commit()
    assert client.get("/healthz").json()["details"]["intake_events"] == 0  # within CACHE_SEC
    seen = poll(lambda: client.get("/healthz").json()["details"]["intake_events"], "the cache to expire",
                timeout=CACHE_SEC * 5)
    assert seen == 7


def test_metrics_show_the_liveness_gauges_and_count_and_time_event_requests(
    client: TestClient, ingest: dict[str, str]
) -> None:
    ok = client.post("/api/v1/events", json=[event(1, account_id=1)], headers=ingest)
    assert ok.status_code == 202, ok.text
    assert client.post("/api/v1/events", json=[{"event_type": "nope"}], headers=ingest).status_code == 422
    text = {"Content-Type": "text/plain", **ingest}
    assert client.post("/api/v1/events", content=b"x", headers=text).status_code == 415
    client.get("/api/v1/hooks", headers=ingest)  # not an /events request: not counted
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    seen = gauges(response.text)
    for name in ("actionhooks_oldest_queued_age_seconds", "actionhooks_last_delivery_timestamp_seconds",
                 "actionhooks_pending_batches", "actionhooks_failed_batches", "actionhooks_intake_events"):
        assert name in seen, name
    assert seen["actionhooks_intake_events"] == 1
    assert seen["actionhooks_events_requests_total{status=202}"] == 1
    assert seen["actionhooks_events_requests_total{status=422}"] == 1
    assert seen["actionhooks_events_requests_total{status=415}"] == 1
    assert seen["actionhooks_events_request_duration_seconds_count"] == 3
    assert "process_resident_memory_bytes" in seen


def test_two_apps_in_one_process_keep_their_own_metrics(app: FastAPI, client: TestClient, tmp_path: Path) -> None:
    other = create_app(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}", DATA_DIR=str(tmp_path)))
    client.post("/api/v1/events", json=[], headers={"Authorization": "Bearer nope"})
    with TestClient(other) as other_client:
        assert "actionhooks_events_requests_total{" not in other_client.get("/metrics").text
    assert gauges(client.get("/metrics").text)["actionhooks_events_requests_total{status=401}"] == 1
    other.state.engine.dispose()


# --- end to end: a stopped worker is visible ------------------------------------------------------------


def _details(engine: Engine) -> dict[str, Any]:
    details: dict[str, Any] = httpx.get(f"{engine.base_url}/healthz", timeout=5).json()["details"]
    return details


@pytest.mark.slow
def test_a_stopped_worker_makes_the_oldest_queued_age_grow_and_a_restarted_one_brings_it_down(
    tmp_path: Path, receiver: Receiver
) -> None:
    with (
        running_engine(tmp_path, "api", "scheduler", "worker", BROKER_URL=redis_broker()) as engine,
        engine.client() as api,
    ):
        api.post("/hooks", json=http_hook(receiver.url, max_batch_size=100, batch_timeout_sec=0.2))
        assert api.post("/events", json=[event(0)]).status_code == 202
        receiver.wait_for(1, timeout=20)
        first = poll(lambda: _details(engine)["last_delivery_at"], "a first delivery time")
        # Given the worker stopped consuming
        engine.kill("worker")
        # When events keep arriving
        for i in range(1, 4):
            assert api.post("/events", json=[event(i)]).status_code == 202
        # Then they wait and the age of the oldest grows, while /healthz stays 200
        waiting = poll(lambda: (d := _details(engine))["oldest_queued_age_sec"] >= 3 and d, "the age to grow",
                       timeout=30)
        assert waiting["intake_events"] == 3
        assert waiting["last_delivery_at"] == first
        page = gauges(httpx.get(f"{engine.base_url}/metrics").text)
        assert page["actionhooks_oldest_queued_age_seconds"] >= 3
        assert page["actionhooks_intake_events"] == 3
        # When a worker starts again, the events go out and the age drops back to zero
        engine.start("worker")
        receiver.wait_until(lambda reqs: sum(len(orjson.loads(r.body)) for r in reqs) >= 4, "all 4 events",
                            timeout=30)
        after = poll(lambda: (d := _details(engine))["oldest_queued_age_sec"] == 0 and d, "the age to drop",
                     timeout=30)
        assert after["intake_events"] == 0
        assert after["pending_batches"] == 0
        assert after["last_delivery_at"] > first


def test_a_read_only_postgresql_gets_503_on_post_events_and_healthz_names_why(tmp_path: Path) -> None:
    with postgres_database("actionhooks_readonly") as url:
        name = url.rsplit("/", 1)[1]
        app = create_app(Settings(DATABASE_URL=url, DATA_DIR=str(tmp_path), BROKER_URL="memory://"))
        token = {"Authorization": f"Bearer {create_token(app.state.sessions, 1, 'ingest')}"}

        def read_only(on: bool) -> None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}')
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])

        try:
            with TestClient(app) as client:
                assert client.get("/healthz").status_code == 200
                read_only(True)
                refused = client.post("/api/v1/events", json=[event(1, account_id=1)], headers=token)
                assert refused.status_code == 503, refused.text
                assert refused.headers["retry-after"] == "5"
                health = client.get("/healthz")
                assert health.status_code == 503
                assert health.json()["checks"]["database"].startswith("cannot write: ReadOnlySqlTransaction")
                assert gauges(client.get("/metrics").text)["actionhooks_database_writable"] == 0
                read_only(False)
                assert client.post("/api/v1/events", json=[event(2, account_id=1)], headers=token).status_code == 202
                assert client.get("/healthz").status_code == 200
                with app.state.sessions() as session:
                    stored = [e["event_id"] for blob in session.scalars(select(Intake.events))
                              for e in orjson.loads(blob)]
                assert len(stored) == 1  # the refused request left nothing
        finally:
            app.state.engine.dispose()
