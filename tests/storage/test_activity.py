"""The console's figures over deliveries and attempts, on SQLite and PostgreSQL: per-minute buckets
(PostgreSQL's integer cast rounds, so the bucket arithmetic differs by dialect), per-hook counters,
and the account scope."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from actionhooks.hooks.models import HookSpec
from actionhooks.storage.activity import WINDOW_MINUTES, activity, hook_figures
from actionhooks.storage.hooks import SqlHookRepository
from actionhooks.storage.tables import Attempt, Delivery

NOW = 1_800_000_000.0 + 45  # 45 s into a minute
MINUTE_END = 1_800_000_060.0


def _hook(sessions: sessionmaker[Session], account_id: int) -> int:
    spec = HookSpec.model_validate(
        {"name": "h", "actions": ["open"], "delivery": {"type": "http", "url": "https://example.com/h"}}
    )
    return SqlHookRepository(sessions).add(account_id, spec).id


def _attempt(session: Session, hook_id: int, at: float, outcome: str, events: int) -> None:
    session.add(
        Attempt(hook_id=hook_id, delivery_id=f"b{at}", attempt=1, started_at=at, outcome=outcome, n_events=events)
    )


def test_attempts_fall_into_the_minute_they_started_in(sessions: sessionmaker[Session]) -> None:
    hook_id = _hook(sessions, 1)
    with sessions.begin() as session:
        _attempt(session, hook_id, MINUTE_END - 1, "ok", 10)  # last second of the current minute
        _attempt(session, hook_id, MINUTE_END - 59.9, "ok", 5)  # its first second
        _attempt(session, hook_id, MINUTE_END - 60.1, "error", 3)  # the minute before
        _attempt(session, hook_id, MINUTE_END - 60 * WINDOW_MINUTES - 1, "ok", 100)  # over an hour ago
        _attempt(session, hook_id, MINUTE_END - 30, "started", 7)  # in flight: neither
    with sessions() as session:
        data = activity(session, 1, now=NOW)
    assert data.start == MINUTE_END - 60 * WINDOW_MINUTES
    assert len(data.delivered) == len(data.failed) == WINDOW_MINUTES
    assert data.delivered[-1] == 15
    assert data.failed[-2] == 3
    assert sum(data.delivered) == 15
    assert sum(data.failed) == 3


def test_figures_and_activity_are_scoped_to_the_account_and_hook(sessions: sessionmaker[Session]) -> None:
    mine, other_mine, theirs = _hook(sessions, 1), _hook(sessions, 1), _hook(sessions, 2)
    with sessions.begin() as session:
        _attempt(session, mine, NOW - 10, "ok", 4)
        _attempt(session, other_mine, NOW - 5, "ok", 6)
        _attempt(session, theirs, NOW - 10, "ok", 1000)
        batches = [(mine, "pending"), (mine, "failed"), (mine, "failed"), (theirs, "failed")]
        for n, (hook_id, status) in enumerate(batches):
            session.add(
                Delivery(id=f"d{n}", hook_id=hook_id, account_id=1 if hook_id != theirs else 2, events=b"[]",
                         n_events=1, status=status, next_attempt_at=0, created_at=0)
            )
    with sessions() as session:
        figures = hook_figures(session, 1, now=NOW)
        only = hook_figures(session, 1, mine, now=NOW)
        account = activity(session, 1, now=NOW)
        one = activity(session, 1, other_mine, now=NOW)
        foreign = activity(session, 1, theirs, now=NOW)
    assert set(figures) == {mine, other_mine}
    assert figures[mine].delivered_last_hour == 4
    assert (figures[mine].pending_batches, figures[mine].failed_batches) == (1, 2)
    assert figures[mine].last_success == NOW - 10
    assert figures[other_mine].delivered_last_hour == 6
    assert set(only) == {mine}
    assert sum(account.delivered) == 10
    assert sum(one.delivered) == 6
    assert sum(foreign.delivered) == 0  # another account's hook id shows nothing
