"""The intake on SQLite and PostgreSQL: dedup by event_id, one route signal per burst, and the writes
the router, the scheduler and quarantine replays make through storage/intake.py."""

from __future__ import annotations

import time

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage import intake
from actionhooks.storage.tables import Intake, RouteSignal

HOUR = 3600.0


def _event(event_id: str) -> dict[str, object]:
    return {"event_id": event_id, "event_type": "open", "account_id": 1, "event_data": {"campaign_id": 7}}


def _accept(session: Session, *ids: str, account_id: int = 1) -> intake.Accepted:
    return intake.accept_events(session, account_id, [_event(i) for i in ids], supplied_ids=list(ids),
                                dedup_window_sec=HOUR)


def _stored_ids(session: Session) -> list[str]:
    blobs = session.scalars(select(Intake.events).order_by(Intake.id))
    return [event["event_id"] for blob in blobs for event in orjson.loads(blob)]


def test_a_resent_event_is_a_duplicate_until_the_clean_up_forgets_its_id(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert _accept(session, "a", "b").duplicates == []
        # A resend within the window is reported, not stored again
        assert _accept(session, "a").duplicates == ["a"]
        # A clean-up that expires older ids keeps it a duplicate ...
        intake.forget_seen(session, time.time() - HOUR)
        session.commit()
        assert _accept(session, "a").duplicates == ["a"]
        # ... until its own sighting is past the cut
        intake.forget_seen(session, time.time() + 1)
        session.commit()
        assert _accept(session, "a").queued == 1
        assert _stored_ids(session) == ["a", "b", "a"]


def test_a_burst_raises_one_signal_until_the_router_clears_it(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert _accept(session, "a").signal_raised
        assert not _accept(session, "b").signal_raised  # a trigger is on its way already
        assert not _accept(session, "b").signal_raised  # a request of duplicates only stores nothing
        intake.clear_signal(session, 1)
        assert _accept(session, "c").signal_raised
        assert session.scalar(select(func.count()).select_from(RouteSignal)) == 1


def test_a_router_holds_the_signal_for_its_successor_and_the_routers_of_an_account_merge_into_one_chain(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        assert _accept(session, "a").signal_raised
        raised_at = session.scalar(select(RouteSignal.signalled_at))
        # The router the acceptance triggered holds the signal until its successor is due ...
        started = raised_at + 0.01
        assert intake.hold_signal(session, 1, started=started, until=started + 0.1)
        session.commit()
        # ... so what is accepted meanwhile sends no trigger: the successor routes it
        assert not _accept(session, "b").signal_raised
        # A router that started before the signal was held leaves the chain to its holder (one successor)
        assert not intake.hold_signal(session, 1, started=started - 1, until=started + 0.5)
        # A router that finds nothing clears it: the next acceptance triggers at once
        intake.clear_signal(session, 1)
        assert _accept(session, "c").signal_raised
        # The router it triggers, started later, takes the chain over
        assert intake.hold_signal(session, 1, started=time.time() + 0.01, until=time.time() + 0.1)


def test_stale_work_names_the_accounts_whose_intake_waits_too_long(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        _accept(session, "a", account_id=1)
        intake.clear_signal(session, 1)
        _accept(session, "b", account_id=2)
        now = time.time()
        assert intake.stale_work(session, now - 60) == set()
        assert intake.stale_work(session, now + 1) == {1, 2}


def test_requeued_events_are_one_row_each_with_their_acceptance_time_and_removed_once_routed(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        intake.requeue(session, 1, [(orjson.dumps(_event("x")), 1_700_000_000.0),
                                    (orjson.dumps(_event("y")), 1_700_000_001.0)])
        intake.requeue(session, 1, [])  # nothing to put back: nothing written
        session.commit()
        rows = session.execute(select(Intake.id, Intake.n_events, Intake.created_at).order_by(Intake.id)).all()
        assert [(n, at) for _, n, at in rows] == [(1, 1_700_000_000.0), (1, 1_700_000_001.0)]
        assert _stored_ids(session) == ["x", "y"]
        intake.remove(session, [rows[0].id])
        session.commit()
        assert _stored_ids(session) == ["y"]


def test_a_claim_says_whether_rows_were_left_so_a_router_ends_only_when_all_that_waited_is_routed(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        for n in range(5):
            _accept(session, f"r{n}a", f"r{n}b")  # five requests of two events
        # A chunk of 5 events takes the first two requests whole (the third would not fit): rows are left
        ids, events, _, more = intake.claim(session, 1, max_events=5)
        assert [e["event_id"] for _, e in events] == ["r0a", "r0b", "r1a", "r1b"]
        assert more
        intake.remove(session, ids)
        # A chunk that takes every waiting row leaves none
        ids, events, _, more = intake.claim(session, 1, max_events=100)
        assert len(events) == 6
        assert not more
        intake.remove(session, ids)
        assert intake.claim(session, 1, max_events=100) == ([], [], [], False)


def test_a_claim_that_reached_its_row_limit_says_rows_may_be_left(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        for n in range(intake.CLAIM_ROWS + 1):  # many one-event requests: the row limit, not the events, ends it
            _accept(session, f"e{n}")
        ids, _, _, more = intake.claim(session, 1, max_events=10 * intake.CLAIM_ROWS)
        assert len(ids) == intake.CLAIM_ROWS
        assert more
        intake.remove(session, ids)
        ids, _, _, more = intake.claim(session, 1, max_events=10 * intake.CLAIM_ROWS)
        assert (len(ids), more) == (1, False)


def test_one_transaction_of_many_requests_dedups_more_ids_than_a_statement_may_bind(
    sessions: sessionmaker[Session],
) -> None:
    # Given three requests of the API's largest size (10,000 events), every id supplied by the sender:
    # 30,000 ids are 90,000 bound parameters, past PostgreSQL's 65,535 (and a default SQLite build's 32,766)
    requests = [intake.Offered([_event(f"{r}-{i}") for i in range(10_000)], [f"{r}-{i}" for i in range(10_000)])
                for r in range(3)]
    with sessions() as session:
        # When the group commit stores them in one transaction
        outcomes = intake.accept_requests(session, 1, requests, dedup_window_sec=HOUR)
        # Then every event is queued once, and a resend of any of them is still known
        assert [(o.queued, o.duplicates) for o in outcomes] == [(10_000, [])] * 3
        assert _accept(session, "0-0", "2-9999", "new").duplicates == ["0-0", "2-9999"]


def test_requests_of_one_trace_context_share_an_intake_row_and_the_route_span_links_every_other(
    sessions: sessionmaker[Session],
) -> None:
    traces = [None, None, "t-1", "t-1", "t-2", None]
    requests = [intake.Offered([_event(f"e-{n}")], [], trace) for n, trace in enumerate(traces)]
    with sessions() as session:
        intake.accept_requests(session, 1, requests, dedup_window_sec=HOUR)
        rows = session.execute(select(Intake.trace_context, Intake.n_events).order_by(Intake.id)).all()
        assert [tuple(row) for row in rows] == [(None, 2), ("t-1", 2), ("t-2", 1), (None, 1)]
        assert _stored_ids(session) == [f"e-{n}" for n in range(6)]  # arrival order kept
