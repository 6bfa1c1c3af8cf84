"""One event whose routing keeps failing never blocks the account: it is quarantined, the rest routed.

The failure is the database's own: a trigger refusing the row routing writes for one event (its
stored content), and on PostgreSQL the original case of issue 13 (a send id longer than its column,
accepted by an engine that did not check it) written straight into the intake.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from actionhooks.storage import quarantine
from actionhooks.storage.tables import Delivery, Hook, Intake, QuarantinedEvent
from actionhooks.worker.route import route_account
from actionhooks.worker.runtime import Runtime
from tests.support.engine import event

POISON_SEND = "poison-send"


@pytest.fixture
def refusing_trigger(engine: Engine) -> Iterator[None]:
    """The database refuses to store the content of the send POISON_SEND (as a full column or a bad byte would)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.send_message_id = '{POISON_SEND}' THEN "
                "RAISE EXCEPTION 'poison refused' USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON contents FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
            )
        else:
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse_poison BEFORE INSERT ON contents WHEN NEW.send_message_id = '{POISON_SEND}' "
                "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS refuse_poison" + (
                " ON contents" if engine.dialect.name == "postgresql" else ""))
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("DROP FUNCTION IF EXISTS refuse_poison()")


def _hook(session: Session, account_id: int = 1) -> int:
    row = Hook(account_id=account_id, name="h", active=True, actions=["click"], filters={}, custom_data={},
               delivery={"type": "http", "url": "http://example.org/", "batch_timeout_sec": 0,
                         "max_batch_size": 1000})
    session.add(row)
    session.commit()
    return row.id


def _accept(session: Session, requests: list[list[dict[str, Any]]], account_id: int = 1) -> None:
    """Intake rows as POST /events stores them (one per request), accepted a second ago."""
    for events in requests:
        session.add(Intake(account_id=account_id, events=orjson.dumps(events), n_events=len(events),
                           created_at=time.time() - 1))
    session.commit()


def _events(n0: int, count: int, account_id: int = 1) -> list[dict[str, Any]]:
    out = []
    for n in range(n0, n0 + count):
        one = event(n, account_id=account_id, event_id=f"e-{n}")
        one["content"] = {"subject": f"s{n}"}
        out.append(one)
    return out


def _delivered_ids(session: Session) -> list[str]:
    return [e["event_id"] for blob in session.scalars(select(Delivery.events).order_by(Delivery.created_at))
            for e in orjson.loads(blob)]


def test_an_event_the_database_refuses_is_quarantined_and_the_rest_of_the_chunk_is_routed_in_order(
    rt: Runtime, refusing_trigger: None
) -> None:
    with rt.sessions() as session:
        _hook(session)
        requests = [_events(0, 10), _events(10, 10), _events(20, 10)]
        requests[1][3]["event_data"]["send_message_id"] = POISON_SEND  # event e-13
        _accept(session, requests)

    routed = route_account(rt, 1)

    with rt.sessions() as session:
        assert session.scalar(select(Intake.id)) is None  # nothing left blocking the account
        assert _delivered_ids(session) == [f"e-{n}" for n in range(30) if n != 13]
        [held] = quarantine.listed(session, 1, limit=10)
    assert routed == 30
    assert held.event_id == "e-13"
    assert "poison refused" in held.error
    assert orjson.loads(held.event) == requests[1][3]


def test_later_events_of_the_account_flow_while_the_poison_waits_and_a_replay_routes_it_once_fixed(
    rt: Runtime, engine: Engine, refusing_trigger: None
) -> None:
    with rt.sessions() as session:
        _hook(session)
        poison = _events(0, 1)
        poison[0]["event_data"]["send_message_id"] = POISON_SEND
        _accept(session, [poison, _events(1, 5)])
    route_account(rt, 1)
    with rt.sessions() as session:
        _accept(session, [_events(6, 5)])
    route_account(rt, 1)
    with rt.sessions() as session:
        assert _delivered_ids(session) == [f"e-{n}" for n in range(1, 11)]
        # Still refused: a replay puts it back in quarantine, never in a loop
        assert quarantine.replay(session, 1, None) == 1
        session.commit()
    route_account(rt, 1)
    with rt.sessions() as session:
        [held] = quarantine.listed(session, 1, limit=10)
        assert held.event_id == "e-0"
    # Once the cause is gone, the replay delivers it
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_poison" + (" ON contents" if engine.dialect.name == "postgresql"
                                                              else ""))
    with rt.sessions() as session:
        assert quarantine.replay(session, 1, [held.id]) == 1
        session.commit()
    route_account(rt, 1)
    with rt.sessions() as session:
        assert _delivered_ids(session)[-1] == "e-0"
        assert quarantine.listed(session, 1, limit=10) == []


def test_a_quarantine_is_per_account_and_replays_only_the_callers_events(rt: Runtime, refusing_trigger: None) -> None:
    with rt.sessions() as session:
        _hook(session, account_id=1)
        _hook(session, account_id=2)
        for account_id in (1, 2):
            poison = _events(0, 1, account_id=account_id)
            poison[0]["event_data"]["send_message_id"] = POISON_SEND
            _accept(session, [poison], account_id=account_id)
    route_account(rt, 1)
    route_account(rt, 2)
    with rt.sessions() as session:
        [mine] = quarantine.listed(session, 1, limit=10)
        [theirs] = quarantine.listed(session, 2, limit=10)
        assert quarantine.replay(session, 1, [theirs.id]) == 0  # another account's id: nothing
        session.commit()
        assert quarantine.count(session) == 2
        assert mine.id != theirs.id


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_the_original_case_a_send_id_longer_than_its_column_no_longer_stops_the_account(rt: Runtime) -> None:
    # An engine before issue 13 accepted it with 202; the intake of an upgraded engine may hold such events.
    with rt.sessions() as session:
        _hook(session)
        events = _events(0, 4)
        events[1]["event_data"]["send_message_id"] = "x" * 300
        events[2]["event_data"]["send_message_id"] = "nul\x00byte"
        events[2]["event_id"] = "e-2\x00"  # an id the API would refuse today: the quarantine still stores it
        _accept(session, [events])
    route_account(rt, 1)
    with rt.sessions() as session:
        assert _delivered_ids(session) == ["e-0", "e-3"]
        held = quarantine.listed(session, 1, limit=10)
        assert [h.event_id for h in held] == ["e-1", "e-2\\0"]
        assert held[0].error.startswith("StringDataRightTruncation: value too long")  # the database's words
        assert "NUL" in held[1].error
        assert orjson.loads(held[1].event)["event_id"] == "e-2\x00"  # the event itself is kept as accepted
        session.execute(delete(QuarantinedEvent))
        session.commit()


def test_a_router_routes_everything_that_waited_beyond_one_chunk_before_it_ends(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A router ends once a claim took every waiting row (what arrives later sends its own trigger),
    so it must not end while rows it saw were left out of a full chunk."""
    monkeypatch.setattr("actionhooks.worker.route.ROUTE_CHUNK_EVENTS", 10)
    with rt.sessions() as session:
        _hook(session)
        _accept(session, [_events(0, 10), _events(10, 10), _events(20, 5)])

    assert route_account(rt, 1) == 25

    with rt.sessions() as session:
        assert session.scalar(select(Intake.id)) is None
        assert _delivered_ids(session) == [f"e-{n}" for n in range(25)]
