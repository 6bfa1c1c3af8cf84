"""Delivery phases on a real database with the shipped StubTransport: claim, attempt, record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event, select, update
from standardwebhooks.webhooks import Webhook

from actionhooks.broker.celery_app import make_celery
from actionhooks.delivery import make_transport
from actionhooks.delivery.stub import StubTransport
from actionhooks.errors import PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tables import Attempt, Delivery
from actionhooks.worker.deliver import claim_due, drain_hook
from actionhooks.worker.runtime import Runtime
from tests.support.receiver import Receiver
from tests.support.runtime import hook_with_batch


@pytest.fixture
def stub() -> StubTransport:
    return StubTransport()


@pytest.fixture
def rt(tmp_path: Path, stub: StubTransport) -> Iterator[Runtime]:
    settings = Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}",
        DATA_DIR=str(tmp_path),
        BROKER_URL="memory://",
        HOOK_RETRY_TIMES=3,
        HOOK_RETRY_PERIOD_SEC=[60],
    )
    runtime = Runtime(settings, make_celery(settings), transport_factory=lambda _config, _settings: stub)
    upgrade(runtime.engine)
    yield runtime
    runtime.close()


def _batch_of(rt: Runtime, events: list[dict[str, Any]]) -> tuple[int, str]:
    """A hook with one ready batch of `events`; returns (hook id, batch id)."""
    hook_id = hook_with_batch(rt, {"type": "http", "url": "http://example.org/", "batch_timeout_sec": 0}, events)
    with rt.sessions() as session:
        return hook_id, session.scalars(select(Delivery.id)).one()


def _attempts(rt: Runtime) -> list[tuple[int, str, str | None]]:
    with rt.sessions() as session:
        rows = session.execute(select(Attempt.attempt, Attempt.outcome, Attempt.error).order_by(Attempt.id)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _delivery(rt: Runtime, batch_id: str) -> Delivery | None:
    with rt.sessions() as session:
        return session.get(Delivery, batch_id)


def test_a_delivered_batch_is_removed_and_its_attempt_logged(rt: Runtime, stub: StubTransport) -> None:
    hook_id, batch_id = _batch_of(rt, [{"n": 1}, {"n": 2}])
    assert drain_hook(rt, hook_id) == 1
    assert [b.batch_id for b in stub.batches] == [batch_id]
    assert stub.batches[0].events == [{"n": 1}, {"n": 2}]
    assert _delivery(rt, batch_id) is None
    assert _attempts(rt) == [(1, "ok", None)]


def test_a_failed_attempt_waits_in_the_database_for_its_period(rt: Runtime, stub: StubTransport) -> None:
    hook_id, batch_id = _batch_of(rt, [{"n": 1}])
    stub.fail_next(1, TargetUnreachable("connection refused"))
    before = time.time()
    drain_hook(rt, hook_id)
    delivery = _delivery(rt, batch_id)
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert before + 54 <= delivery.next_attempt_at <= time.time() + 66  # 60 s ±10% jitter
    assert "connection refused" in (delivery.last_error or "")
    assert len(stub.attempts) == 1  # not resent before its time


def test_an_attempt_is_counted_before_it_is_made_so_a_dead_worker_uses_it_up(rt: Runtime, stub: StubTransport) -> None:
    hook_id, _ = _batch_of(rt, [{"n": 1}])
    hook = rt.hooks.get(hook_id)
    assert hook is not None
    # Given a worker that claimed the batch and died before recording anything
    with rt.sessions() as session:
        assert [c.attempt for c in claim_due(session, rt, hook, limit=1)] == [1]
        session.commit()
        session.execute(update(Delivery).values(lease_until=0.0))
        session.commit()
    # When another worker drains after the lease passed
    drain_hook(rt, hook_id)
    # Then the batch goes out as attempt 2 and the lost attempt is logged as such
    assert [b.attempt for b in stub.attempts] == [2]
    assert _attempts(rt) == [(1, "error", "worker lost during the attempt"), (2, "ok", None)]


def test_a_worker_lost_during_the_last_allowed_attempt_sends_the_batch_to_the_failed_list(
    rt: Runtime, stub: StubTransport
) -> None:
    hook_id, batch_id = _batch_of(rt, [{"n": 1}])
    with rt.sessions() as session:
        session.execute(update(Delivery).values(attempts=3, lease_until=0.0))
        session.commit()
    drain_hook(rt, hook_id)
    delivery = _delivery(rt, batch_id)
    assert delivery is not None
    assert delivery.status == "failed"
    assert "worker lost during attempt 3" in (delivery.last_error or "")
    assert stub.attempts == []


def test_only_the_events_not_yet_delivered_are_sent_again(rt: Runtime, stub: StubTransport) -> None:
    hook_id, batch_id = _batch_of(rt, [{"n": 1}, {"n": 2}, {"n": 3}])
    stub.fail_next(1, TargetRejected("nack", delivered=frozenset({0, 2})))
    drain_hook(rt, hook_id)
    with rt.sessions() as session:
        session.execute(update(Delivery).values(next_attempt_at=0.0))
        session.commit()
    drain_hook(rt, hook_id)
    assert [b.events for b in stub.attempts] == [[{"n": 1}, {"n": 2}, {"n": 3}], [{"n": 2}]]
    assert stub.attempts[1].batch_id == batch_id
    assert _delivery(rt, batch_id) is None


def test_an_error_after_every_event_was_delivered_resends_nothing(rt: Runtime, stub: StubTransport) -> None:
    hook_id, batch_id = _batch_of(rt, [{"n": 1}, {"n": 2}])
    stub.fail_next(1, TargetUnreachable("closed after confirms", delivered=frozenset({0, 1})))
    drain_hook(rt, hook_id)
    assert _delivery(rt, batch_id) is None
    assert len(stub.attempts) == 1


def test_a_payload_that_can_never_be_sent_is_failed_at_once(rt: Runtime, stub: StubTransport) -> None:
    hook_id, batch_id = _batch_of(rt, [{"n": 1}])
    stub.fail_next(1, PayloadError("URL of 9000 bytes is over 8192"))
    drain_hook(rt, hook_id)
    delivery = _delivery(rt, batch_id)
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert orjson.loads(delivery.events) == [{"n": 1}]


def test_a_transport_bug_costs_a_retry_not_the_batch(rt: Runtime, stub: StubTransport) -> None:
    hook_id, batch_id = _batch_of(rt, [{"n": 1}])
    stub.fail_next(1, ZeroDivisionError("bug"))  # type: ignore[arg-type]
    drain_hook(rt, hook_id)
    delivery = _delivery(rt, batch_id)
    assert delivery is not None
    assert delivery.status == "pending"
    assert "unexpected ZeroDivisionError" in (delivery.last_error or "")


def test_a_receiver_gets_the_stored_batch_byte_for_byte_and_its_signature_verifies(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
                        HOOK_ALLOW_PRIVATE_TARGETS=True)
    rt = Runtime(settings, make_celery(settings), transport_factory=make_transport)
    try:
        upgrade(rt.engine)
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        hook_id = hook_with_batch(rt, {"type": "http", "url": receiver.url, "batch_timeout_sec": 0,
                                       "signing_secret": secret}, [{"n": 1}, {"n": 2}])
        # Stored in a form the engine's encoder would not write: re-encoding it would change the bytes.
        stored = b'[{"n": 1, "s": "caf\\u00e9"}, {"n": 2}]'
        with rt.sessions() as session:
            session.execute(update(Delivery).values(events=stored))
            session.commit()
        assert drain_hook(rt, hook_id) == 1
        request = receiver.wait_for(1)[0]
        assert request.body == stored
        assert Webhook(secret).verify(request.body, request.headers) == [{"n": 1, "s": "café"}, {"n": 2}]
        assert _attempts(rt) == [(1, "ok", None)]
    finally:
        rt.close()


def test_a_rounds_outcomes_are_recorded_in_the_next_rounds_claim_under_one_lock_of_the_hook(
    rt: Runtime, stub: StubTransport
) -> None:
    # Given 70 batches of one event: rounds of 64 (16 sending threads, 4 batches each) and 6
    hook_id = hook_with_batch(rt, {"type": "http", "url": "http://example.org/", "max_batch_size": 1,
                                   "batch_timeout_sec": 0}, [{"n": i} for i in range(70)])
    locks: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if " ".join(statement.split()).startswith("SELECT hooks.id FROM hooks WHERE hooks.id IN"):
            locks.append(statement)

    event.listen(rt.engine, "before_cursor_execute", seen)
    try:
        assert drain_hook(rt, hook_id) == 70
    finally:
        event.remove(rt.engine, "before_cursor_execute", seen)
    assert sorted(e["n"] for e in stub.events) == list(range(70))
    # Then the hook row is locked by the window's close, by the first claim, and once per round after
    # it (the round's record and the next claim, the last one finding nothing): not twice per round
    assert len(locks) == 1 + 1 + 2
    assert _attempts(rt) == [(1, "ok", None)] * 70
