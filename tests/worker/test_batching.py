"""Batch formation on a real database: full batches at once, the rest when its window closes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from actionhooks.hooks.matching import CompiledHook, compile_hook
from actionhooks.settings import Settings
from actionhooks.storage.db import make_engine, session_factory
from actionhooks.storage.hooks import hook_row
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.outbox import overdue_windows
from actionhooks.storage.tables import Delivery, Hook, Outbox
from actionhooks.worker.batching import form_batches


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def _hook(session: Session, **delivery: Any) -> CompiledHook:
    row = Hook(
        account_id=1,
        name="h",
        active=True,
        actions=["open"],
        filters={},
        custom_data={},
        delivery={"type": "http", "url": "http://example.org/", **delivery}
        if delivery.get("type", "http") == "http" else delivery,
    )
    session.add(row)
    session.flush()
    return compile_hook(hook_row(row), Settings())


def _batches(session: Session) -> list[int]:
    return [len(orjson.loads(b)) for b in session.scalars(select(Delivery.events).order_by(Delivery.created_at))]


def test_full_batches_leave_at_once_and_the_rest_waits_for_its_window(session: Session) -> None:
    hook = _hook(session, max_batch_size=3, batch_timeout_sec=10)
    formed = form_batches(session, hook, [{"n": i} for i in range(7)], now=1000.0)
    assert (formed.batches, formed.window_opened, formed.window_due_in) == (2, True, 10.0)
    assert _batches(session) == [3, 3]
    assert session.scalar(select(Outbox.due_at)) == 1010.0
    # More events join the open window without restarting it
    formed = form_batches(session, hook, [{"n": 7}], now=1004.0)
    assert (formed.batches, formed.window_opened, formed.window_due_in) == (0, False, 6.0)
    assert overdue_windows(session, 1009.0, grace=0) == []
    assert overdue_windows(session, 1010.0, grace=0) == [hook.id]
    # When the window closes, the rest leaves as one batch in arrival order
    formed = form_batches(session, hook, [], now=1010.0)
    assert formed.batches == 1
    assert _batches(session) == [3, 3, 2]
    last = orjson.loads(session.scalars(select(Delivery.events).order_by(Delivery.created_at.desc())).first())
    assert last == [{"n": 6}, {"n": 7}]
    assert session.scalar(select(Outbox.id)) is None


def test_get_mode_and_zero_windows_cut_every_event_immediately(session: Session) -> None:
    get_hook = _hook(session, method="GET")
    assert form_batches(session, get_hook, [{"n": 1}, {"n": 2}], now=5.0).batches == 2
    now_hook = _hook(session, batch_timeout_sec=0)
    assert form_batches(session, now_hook, [{"n": 1}], now=5.0).batches == 1
    assert _batches(session) == [1, 1, 1]


def test_an_s3_hook_has_a_batch_window_and_other_brokers_none(session: Session) -> None:
    s3 = {"type": "s3", "bucket": "archive", "region": "eu-west-1", "access_key_id": "AKID",
          "secret_access_key": "s", "max_batch_size": 4, "batch_timeout_sec": 30}
    archive = _hook(session, **s3)
    formed = form_batches(session, archive, [{"n": i} for i in range(5)], now=100.0)
    assert (formed.batches, formed.window_due_in) == (1, 30.0)  # 4 leave, 1 waits for others
    redis_stream = _hook(session, type="redis_stream", url="redis://r:6379/0")
    assert form_batches(session, redis_stream, [{"n": 1}], now=100.0).batches == 1  # no window
    assert _batches(session) == [4, 1]


def test_a_window_filled_by_many_appends_cuts_in_arrival_order_with_its_oldest_acceptance_and_first_span(
    session: Session,
) -> None:
    hook = _hook(session, max_batch_size=5, batch_timeout_sec=10)
    for i, (accepted, span) in enumerate([(90.0, None), (80.0, "00-a-01"), (95.0, "00-b-01")]):
        formed = form_batches(session, hook, [{"n": i}], now=100.0 + i, accepted_at=accepted, trace_context=span)
        assert (formed.batches, formed.window_opened) == (0, i == 0)
    assert formed.window_due_in == 8.0  # the window opened at 100 and does not restart
    assert set(session.scalars(select(Outbox.due_at))) == {110.0}
    formed = form_batches(session, hook, [{"n": 3}, {"n": 4}, {"n": 5}], now=104.0, accepted_at=99.0)
    assert (formed.batches, formed.window_opened, formed.window_due_in) == (1, True, 10.0)  # the rest: new events
    batch = session.execute(select(Delivery.events, Delivery.accepted_at, Delivery.trace_context)).one()
    assert orjson.loads(batch.events) == [{"n": i} for i in range(5)]
    assert (batch.accepted_at, batch.trace_context) == (80.0, "00-a-01")
    assert session.execute(select(Outbox.events, Outbox.due_at)).one() == (b'[{"n":5}]', 114.0)


def test_a_window_whose_hook_gets_a_shorter_timeout_closes_by_the_new_one(session: Session) -> None:
    hook = _hook(session, max_batch_size=100, batch_timeout_sec=60)
    form_batches(session, hook, [{"n": 1}], now=1000.0)
    row = session.get(Hook, hook.id)
    assert row is not None
    row.delivery = {**row.delivery, "batch_timeout_sec": 5}
    session.flush()
    shorter = compile_hook(hook_row(row), Settings())
    formed = form_batches(session, shorter, [{"n": 2}], now=1002.0)
    assert (formed.batches, formed.window_due_in) == (0, 3.0)
    assert overdue_windows(session, 1005.0, grace=0) == [hook.id]
    assert form_batches(session, shorter, [], now=1005.0).batches == 1
    assert _batches(session) == [2]
