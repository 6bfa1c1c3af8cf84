"""Message content end to end: real API, worker and scheduler processes, a real receiver on loopback.

A send event carries the message content; include_content hooks get it on that event and on every
later event of the send, other hooks and other accounts never do, and it stops being attached (and
is deleted) after HOOK_CONTENT_CLEANUP_HOURS.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.support.engine import Engine, event, http_hook, poll, postgres_database, redis_broker, running_engine
from tests.support.receiver import Received, Receiver

pytestmark = pytest.mark.slow

EMAIL = {"subject": "Spring sale: 20% off everything", "html": "<html><body><p>Hi!</p></body></html>", "text": "Hi!"}
LIFECYCLE = ["send", "deliv", "open", "click"]


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One engine for the tests that keep the default retention: SQLite, Redis, cleanup every 0.5 s."""
    folder = tmp_path_factory.mktemp("content")
    with running_engine(folder, "api", "worker", "scheduler", BROKER_URL=redis_broker(), CLEANUP_EVERY_SEC=0.5) as eng:
        yield eng


@pytest.fixture
def engine(shared_engine: Engine) -> Iterator[Engine]:
    """The shared engine; the hooks a test created are deleted after it, so the next test sees only its own."""
    yield shared_engine
    for account_id in (23, 24):
        with shared_engine.client(account_id) as api:
            for hook in api.get("/hooks").json():
                api.delete(f"/hooks/{hook['id']}").raise_for_status()


def content_hook(url: str, include_content: bool, name: str = "content hook") -> dict[str, Any]:
    """A hook for the whole life of an email send, delivering each routed event at once."""
    hook = http_hook(url, batch_timeout_sec=0)
    return {**hook, "name": name, "actions": LIFECYCLE, "include_content": include_content}


def send_lifecycle(api: httpx.Client, receivers: list[Receiver], send_id: str, body: dict[str, Any]) -> None:
    """The send (carrying `body`) then deliv, open, click, each in its own request after the previous arrived."""
    for n, event_type in enumerate(LIFECYCLE, start=1):
        one = event(0, event_type=event_type)
        one["event_data"]["send_message_id"] = send_id
        if event_type == "send":
            one["content"] = body
        assert api.post("/events", json=[one]).status_code == 202
        for r in receivers:
            r.wait_until(lambda rs, n=n: len(delivered_of(rs)) >= n, f"{n} event(s) of {send_id}", timeout=15)


def delivered_of(requests: list[Received]) -> list[dict[str, Any]]:
    return [e for r in requests for e in orjson.loads(r.body)]


def delivered(receiver: Receiver) -> list[dict[str, Any]]:
    return delivered_of(receiver.requests)


def sqlite_rows(engine: Engine, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(engine.folder / "data" / "actionhooks.db", timeout=30)) as db:
        return db.execute(sql, args).fetchall()


def test_include_content_hooks_get_the_content_on_every_later_event_of_the_send_and_others_never(
    engine: Engine,
) -> None:
    with_content, without = Receiver(), Receiver()
    try:
        with engine.client() as api:
            api.post("/hooks", json=content_hook(with_content.url, include_content=True)).raise_for_status()
            api.post("/hooks", json=content_hook(without.url, include_content=False)).raise_for_status()
            send_lifecycle(api, [with_content, without], "send-lifecycle", EMAIL)
        got, plain = delivered(with_content), delivered(without)
        assert [e["event_type"] for e in got] == LIFECYCLE
        assert [e.get("content") for e in got] == [EMAIL] * 4
        assert [e["event_type"] for e in plain] == LIFECYCLE
        assert all("content" not in e for e in plain)  # not even on the send that carried it
    finally:
        with_content.close()
        without.close()


def test_content_stays_within_its_account_even_for_the_same_send_id(engine: Engine, receiver: Receiver) -> None:
    other = Receiver()
    try:
        with engine.client(23) as ours, engine.client(24) as theirs:
            ours.post("/hooks", json=content_hook(receiver.url, True, "ours")).raise_for_status()
            theirs.post("/hooks", json=content_hook(other.url, True, "theirs")).raise_for_status()
            # account 23 stores content for send "shared-send"
            send_lifecycle(ours, [receiver], "shared-send", EMAIL)
            # account 24's events of a send with the same id, without content of their own
            click = event(0, account_id=24, event_type="click")
            click["event_data"]["send_message_id"] = "shared-send"
            assert theirs.post("/events", json=[click]).status_code == 202
            theirs_got = other.wait_for(1, timeout=15)
        assert [e.get("content") for e in delivered_of(theirs_got)] == [None]
        assert all(e["account_id"] == 23 for e in delivered(receiver))
    finally:
        other.close()


def test_the_scheduler_deletes_expired_content_in_chunks_and_keeps_fresh_content(
    engine: Engine, receiver: Receiver
) -> None:
    # Given 2,500 contents stored 73 h ago (retention 72 h) and one 71 h old, written straight to storage
    now = time.time()
    rows = [(23, f"expired-{i}", orjson.dumps(EMAIL).decode(), now - 73 * 3600) for i in range(2500)]
    rows.append((23, "old-but-fresh", orjson.dumps(EMAIL).decode(), now - 71 * 3600))
    with closing(sqlite3.connect(engine.folder / "data" / "actionhooks.db", timeout=30)) as db, db:
        db.executemany("INSERT INTO contents (account_id, send_message_id, content, stored_at) VALUES (?,?,?,?)", rows)
    # and one just stored through the API
    with engine.client() as api:
        api.post("/hooks", json=content_hook(receiver.url, True)).raise_for_status()
        send_lifecycle(api, [receiver], "just-sent", EMAIL)

    # Then the scheduler (cleanup every 0.5 s) removes every expired row and only those
    poll(
        lambda: sqlite_rows(engine, "SELECT count(*) FROM contents WHERE send_message_id LIKE 'expired-%'")[0][0] == 0,
        "the scheduler to delete expired content",
        timeout=15,
    )
    kept = {sid for (sid,) in sqlite_rows(engine, "SELECT send_message_id FROM contents")}
    assert {"old-but-fresh", "just-sent"} <= kept
    assert not any(sid.startswith("expired-") for sid in kept)
    poll(lambda: expired_logged(engine) == 2500, "the scheduler to report 2,500 expired contents", timeout=5)


def expired_logged(engine: Engine) -> int:
    """Contents the scheduler reports as expired, over all its cleanup runs."""
    lines = engine.logs["scheduler"].read_text().splitlines()
    return sum(int(line.split("expired ")[1].split()[0]) for line in lines if "stored message contents" in line)


def test_content_past_a_sub_minute_retention_is_not_attached_before_the_scheduler_deletes_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Retention 0.001 h = 3.6 s; the scheduler cleans up once at start and then not for an hour
    with running_engine(
        tmp_path, "api", "worker", "scheduler",
        BROKER_URL=redis_broker(), HOOK_CONTENT_CLEANUP_HOURS=0.001, CLEANUP_EVERY_SEC=3600,
    ) as eng, eng.client() as api:
        api.post("/hooks", json=content_hook(receiver.url, True)).raise_for_status()
        send = event(0, event_type="send", content=EMAIL)
        send["event_data"]["send_message_id"] = "short-lived"
        api.post("/events", json=[send]).raise_for_status()
        receiver.wait_for(1, timeout=15)
        # Given the content is older than the retention but still stored
        [(stored_at,)] = sqlite_rows(eng, "SELECT stored_at FROM contents WHERE send_message_id = 'short-lived'")
        poll(lambda: time.time() > stored_at + 3.6 + 0.2, "the content to pass its retention", timeout=10)
        # When a later event of that send arrives
        click = event(0, event_type="click")
        click["event_data"]["send_message_id"] = "short-lived"
        api.post("/events", json=[click]).raise_for_status()
        got = delivered_of(receiver.wait_for(2, timeout=15))
        still_stored = sqlite_rows(eng, "SELECT count(*) FROM contents WHERE send_message_id = 'short-lived'")
    # Then the send had its content, the click goes out without it, though the row was not deleted yet
    assert [(e["event_type"], e.get("content")) for e in got] == [("send", EMAIL), ("click", None)]
    assert still_stored == [(1,)]


def test_content_survives_an_engine_restart_within_its_retention(tmp_path: Path, receiver: Receiver) -> None:
    with postgres_database() as url, running_engine(
        tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker(), DATABASE_URL=url, CLEANUP_EVERY_SEC=0.5
    ) as eng:
        with eng.client() as api:
            api.post("/hooks", json=content_hook(receiver.url, True)).raise_for_status()
            send = event(0, event_type="send", content=EMAIL)
            send["event_data"]["send_message_id"] = "before-restart"
            api.post("/events", json=[send]).raise_for_status()
        receiver.wait_for(1, timeout=15)
        # When every process stops and the engine starts again
        eng.stop()
        eng.start("api", "worker", "scheduler")
        with eng.client() as api:
            opened = event(0, event_type="open")
            opened["event_data"]["send_message_id"] = "before-restart"
            api.post("/events", json=[opened]).raise_for_status()
        got = delivered_of(receiver.wait_for(2, timeout=20))
        with psycopg.connect(url) as db:
            stored = db.execute("SELECT count(*) FROM contents").fetchone()
    # Then the open event after the restart still carries the content (the cleanup ran and kept it)
    assert [(e["event_type"], e.get("content")) for e in got] == [("send", EMAIL), ("open", EMAIL)]
    assert stored == (1,)
