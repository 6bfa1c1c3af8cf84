"""Content storage on its own (storage/content.py), on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.settings import Settings
from actionhooks.storage import content
from actionhooks.storage.db import make_engine, session_factory
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tables import Content
from actionhooks.worker import scheduler

HOUR = 3600.0
EMAIL = {"subject": "Spring sale", "html": "<p>hello</p>", "text": "hello"}


class Statements:
    """Counts the SQL statements an engine runs, by their first word."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)
        self.engine = engine

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement.split(None, 1)[0].upper())

    def count(self, verb: str) -> int:
        return self.seen.count(verb)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


@pytest.fixture
def statements(engine: Engine) -> Iterator[Statements]:
    counter = Statements(engine)
    yield counter
    counter.close()


def sent(send_id: str | None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A minimal event of one send (the fields content.py looks at)."""
    out: dict[str, Any] = {"event_type": "send", "event_data": {"send_message_id": send_id}}
    if body is not None:
        out["content"] = body
    return out


def store(sessions: sessionmaker[Session], account_id: int, events: list[dict[str, Any]], at: float) -> None:
    with sessions() as session:
        content.remember(session, account_id, events, at)
        session.commit()


def attached(
    sessions: sessionmaker[Session], account_id: int, events: list[dict[str, Any]], settings: Settings, now: float
) -> list[dict[str, Any] | None]:
    """What each event carries after attaching, as a freshly routed chunk would see it."""
    with sessions() as session:
        attach = content.Attacher(session, account_id, {}, settings, now, wanted=events)
        for e in events:
            attach(e)
    return [e.get("content") for e in events]


def test_stored_content_is_attached_to_later_events_of_the_same_send(sessions: sessionmaker[Session]) -> None:
    now = time.time()
    store(sessions, 23, [sent("send-1", EMAIL), sent("send-2", {"text": "sms"})], now)

    got = attached(sessions, 23, [sent("send-1"), sent("send-2"), sent("send-3"), sent(None)], Settings(), now + 60)

    assert got == [EMAIL, {"text": "sms"}, None, None]


def test_another_accounts_content_for_the_same_send_id_never_leaks(sessions: sessionmaker[Session]) -> None:
    now = time.time()
    store(sessions, 23, [sent("send-1", EMAIL)], now)

    assert attached(sessions, 24, [sent("send-1")], Settings(), now) == [None]
    assert attached(sessions, 23, [sent("send-1")], Settings(), now) == [EMAIL]


def test_content_older_than_the_retention_is_not_attached_though_still_stored(
    sessions: sessionmaker[Session],
) -> None:
    settings = Settings(HOOK_CONTENT_CLEANUP_HOURS=0.001)  # 3.6 s
    now = time.time()
    store(sessions, 23, [sent("old", EMAIL)], now - 3.7)
    store(sessions, 23, [sent("young", EMAIL)], now - 3.5)

    assert attached(sessions, 23, [sent("old"), sent("young")], settings, now) == [None, EMAIL]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Content)) == 2


def test_content_carried_again_replaces_the_stored_one_and_restarts_its_retention(
    sessions: sessionmaker[Session],
) -> None:
    settings = Settings(HOOK_CONTENT_CLEANUP_HOURS=1)
    now = time.time()
    store(sessions, 23, [sent("send-1", {"text": "first"})], now - 2 * HOUR)
    store(sessions, 23, [sent("send-1", {"text": "second"}), sent("send-1", {"text": "third"})], now)

    assert attached(sessions, 23, [sent("send-1")], settings, now) == [{"text": "third"}]


def test_content_carried_in_the_same_chunk_is_attached_without_reading_it_back(
    sessions: sessionmaker[Session], statements: Statements
) -> None:
    events = [sent("send-1", EMAIL), sent("send-1")]
    with sessions() as session:
        fresh = content.remember(session, 23, events, time.time())
        selects_before = statements.count("SELECT")
        attach = content.Attacher(session, 23, fresh, Settings(), time.time(), wanted=events)
        delivered = [{k: v for k, v in e.items() if k != "content"} for e in events]
        for d in delivered:
            attach(d)

    assert [d["content"] for d in delivered] == [EMAIL, EMAIL]
    assert statements.count("SELECT") == selects_before


def test_an_event_without_a_send_id_gets_only_the_content_it_carried_itself(
    sessions: sessionmaker[Session],
) -> None:
    carrying = sent(None, EMAIL)
    with sessions() as session:
        attach = content.Attacher(session, 23, {}, Settings(), time.time(), wanted=[carrying])
        own: dict[str, Any] = {"event_type": "send"}
        bare: dict[str, Any] = {"event_type": "open"}
        attach(own, carrying["content"])
        attach(bare)

    assert own["content"] == EMAIL
    assert "content" not in bare


def test_attaching_thousands_of_sends_reads_content_in_a_few_bulk_queries(
    sessions: sessionmaker[Session], statements: Statements
) -> None:
    n = 2500
    now = time.time()
    store(sessions, 23, [sent(f"send-{i}", {"text": f"body {i}"}) for i in range(n)], now)
    events = [sent(f"send-{i}") for i in range(n)] + [sent(f"send-{i}") for i in range(0, n, 2)]
    selects_before = statements.count("SELECT")

    got = attached(sessions, 23, events, Settings(), now)

    assert got == [{"text": f"body {i}"} for i in range(n)] + [{"text": f"body {i}"} for i in range(0, n, 2)]
    # one query per LOAD_CHUNK send ids, not one per event or per send
    assert statements.count("SELECT") - selects_before == -(-n // content.LOAD_CHUNK)


def test_expire_deletes_only_expired_content_in_bounded_chunks(
    sessions: sessionmaker[Session], statements: Statements
) -> None:
    settings = Settings(HOOK_CONTENT_CLEANUP_HOURS=72)
    now = time.time()
    store(sessions, 23, [sent(f"old-{i}", EMAIL) for i in range(25)], now - 73 * HOUR)
    store(sessions, 24, [sent(f"old-{i}", EMAIL) for i in range(5)], now - 73 * HOUR)
    store(sessions, 23, [sent(f"fresh-{i}", EMAIL) for i in range(3)], now - 71 * HOUR)
    deletes_before = statements.count("DELETE")

    with sessions() as session:
        expired = content.expire(session, now, settings, chunk=7)

    assert expired == content.Expired(removed=30, finished=True)
    assert statements.count("DELETE") - deletes_before == 5  # 30 rows, at most 7 per transaction
    with sessions() as session:
        left = session.execute(select(Content.account_id, Content.send_message_id)).all()
    assert sorted(left) == [(23, f"fresh-{i}") for i in range(3)]
    with sessions() as session:
        assert content.expire(session, now, settings, chunk=7) == content.Expired(removed=0, finished=True)


def test_expire_stops_at_its_time_budget_and_the_next_run_goes_on(sessions: sessionmaker[Session]) -> None:
    settings = Settings(HOOK_CONTENT_CLEANUP_HOURS=1)
    now = time.time()
    store(sessions, 23, [sent(f"old-{i}", EMAIL) for i in range(12)], now - 2 * HOUR)

    with sessions() as session:
        first = content.expire(session, now, settings, chunk=5, budget_sec=0)
        second = content.expire(session, now, settings, chunk=5, budget_sec=0)
        third = content.expire(session, now, settings, chunk=5, budget_sec=0)

    assert [first, second, third] == [
        content.Expired(removed=5, finished=False),
        content.Expired(removed=5, finished=False),
        content.Expired(removed=2, finished=True),
    ]


def test_a_request_of_ten_thousand_sends_is_stored_within_sqlites_usual_parameter_limit(tmp_path: Path) -> None:
    # Debian's SQLite allows 250,000 bound parameters; the upstream default (macOS, Windows builds) is 32,766
    engine = make_engine(f"sqlite:///{tmp_path / 'limited.db'}")
    event.listen(engine, "connect", lambda conn, _record: conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766))
    upgrade(engine)
    sessions = session_factory(engine)
    try:
        store(sessions, 23, [sent(f"send-{i}", {"text": "hi"}) for i in range(10_000)], time.time())
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Content)) == 10_000
    finally:
        engine.dispose()


class NoTriggers:
    """The scheduler's trigger sender, with no broker: these tests look only at its cleanup."""

    def route(self, account_id: int) -> None: ...

    def drain(self, hook_id: int, countdown: float | None = None) -> None: ...


def test_the_scheduler_goes_on_with_a_cleanup_backlog_on_its_next_ticks_not_a_cleanup_period_later(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(HOOK_CONTENT_CLEANUP_HOURS=1, CLEANUP_EVERY_SEC=3600)
    now = time.time()
    store(sessions, 23, [sent(f"old-{i}", EMAIL) for i in range(12)], now - 2 * HOUR)
    # each cleanup run may delete one chunk of 5 before its budget is spent
    monkeypatch.setattr(scheduler.content, "expire", functools.partial(content.expire, chunk=5, budget_sec=0))
    ticker = scheduler.Scheduler(settings, sessions, NoTriggers())  # type: ignore[arg-type]

    def left() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(Content)) or 0

    counts = []
    for tick in range(4):
        ticker.tick(now + tick * settings.SCHEDULER_TICK_SEC)
        counts.append(left())

    assert counts == [7, 2, 0, 0]
