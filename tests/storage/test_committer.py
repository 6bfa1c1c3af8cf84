"""Group commit: concurrent requests share one transaction; each returns only once durable, with its own
outcome; a failing request or account fails only itself; visitors join."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage.committer import PAUSE_BELOW_EVENTS, GroupCommitter, ShuttingDown
from actionhooks.storage.sources import CAPTURES_KEPT, SqlSourceRepository, identities_for
from actionhooks.storage.tables import Intake, SeenEvent, SourceCapture
from actionhooks.storage.tables import Source as SourceRow


def event(n: int, visitor: str | None = None, profile: str | None = None) -> dict[str, Any]:
    return {"event_id": f"e-{n}", "event_type": "pixel", "event_date": "2026-01-01T00:00:00.000000000Z",
            "account_id": 23, "list_id": 1, "profile_id": profile, "is_test": False,
            "event_data": {"visitor_id": visitor, "pixel_id": 5}}


def stored(sessions: sessionmaker[Session]) -> list[list[dict[str, Any]]]:
    with sessions() as session:
        return [orjson.loads(blob) for blob in session.scalars(select(Intake.events).order_by(Intake.id))]


def run(sessions: sessionmaker[Session], scenario: Any, **options: Any) -> list[int]:
    signals: list[int] = []
    committer = GroupCommitter(sessions, dedup_window_sec=60, on_signal=signals.append, **options)

    async def main() -> None:
        try:
            await scenario(committer)
        finally:
            await committer.close()

    asyncio.run(main())
    return signals


def test_concurrent_requests_are_written_in_one_transaction(sessions: sessionmaker[Session]) -> None:
    async def scenario(committer: GroupCommitter) -> None:
        await asyncio.gather(*(committer.submit(23, [event(n)]) for n in range(200)))

    signals = run(sessions, scenario)
    rows = stored(sessions)
    assert sum(len(r) for r in rows) == 200  # every request's event is durable when gather returns
    assert len(rows) < 10  # grouped, not one intake row (transaction) per request
    assert signals == [23]  # one route trigger for the burst


def test_a_request_that_cannot_be_stored_fails_only_itself(sessions: sessionmaker[Session]) -> None:
    async def scenario(committer: GroupCommitter) -> None:
        deep: dict[str, Any] = {}
        for _ in range(300):
            deep = {"x": deep}
        bad = event(1) | {"event_data": {"visitor_id": None, "x": deep}}  # orjson writes 254 levels at most
        other = event(2) | {"account_id": 24}
        results = await asyncio.gather(committer.submit(23, [event(0)]), committer.submit(23, [bad]),
                                       committer.submit(23, [event(3)]), committer.submit(24, [other]),
                                       return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["Accepted", "HookValidationError", "Accepted", "Accepted"]

    run(sessions, scenario)
    # The same account's other requests of that transaction were written again without it
    assert sorted(e["event_id"] for row in stored(sessions) for e in row) == ["e-0", "e-2", "e-3"]


def refuse_intake_of(sessions: sessionmaker[Session], account_id: int) -> None:
    """A trigger in the database itself refusing every intake row of `account_id` (a failing account)."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text(f"CREATE TRIGGER refuse BEFORE INSERT ON intake WHEN NEW.account_id = {account_id} "
                                 "BEGIN SELECT RAISE(ABORT, 'account refused'); END"))
            return
        session.execute(text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                             f"IF NEW.account_id = {account_id} THEN RAISE EXCEPTION 'account refused'; END IF; "
                             "RETURN NEW; END $$ LANGUAGE plpgsql"))
        session.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON intake FOR EACH ROW EXECUTE FUNCTION refuse()"))


def test_an_account_whose_writes_fail_never_fails_another_accounts_requests(sessions: sessionmaker[Session]) -> None:
    refuse_intake_of(sessions, 66)
    batches: list[tuple[int, int]] = []

    async def scenario(committer: GroupCommitter) -> None:
        failing = [committer.submit(66, [event(n) | {"account_id": 66}], supplied_ids=[f"e-{n}"]) for n in range(3)]
        fine = [committer.submit(23, [event(n)], supplied_ids=[f"e-{n}"]) for n in range(10, 13)]
        results = await asyncio.gather(*failing, *fine, return_exceptions=True)
        assert [isinstance(r, Exception) for r in results] == [True] * 3 + [False] * 3

    signals = run(sessions, scenario, on_batch=lambda requests, events: batches.append((requests, events)))
    assert [e["event_id"] for row in stored(sessions) for e in row] == ["e-10", "e-11", "e-12"]
    assert batches == [(3, 3)]  # account 23's three requests in one transaction; account 66's none
    assert signals == [23]
    with sessions() as session:  # nothing of the failed account's requests stayed: not even their dedup ids
        assert session.scalars(select(SeenEvent.event_id).where(SeenEvent.account_id == 66)).all() == []


def test_concurrent_requests_are_deduplicated_as_if_one_came_after_the_other(sessions: sessionmaker[Session]) -> None:
    async def scenario(committer: GroupCommitter) -> None:
        first, second = await asyncio.gather(
            committer.submit(23, [event(1), event(2)], supplied_ids=["e-1", "e-2"]),
            committer.submit(23, [event(2), event(3)], supplied_ids=["e-2", "e-3"]),
        )
        assert (first.queued, first.duplicates, second.queued, second.duplicates) == (2, [], 1, ["e-2"])
        again = await committer.submit(23, [event(3), event(4)], supplied_ids=["e-3", "e-4"])
        assert (again.queued, again.duplicates) == (1, ["e-3"])

    run(sessions, scenario)
    assert [e["event_id"] for row in stored(sessions) for e in row] == ["e-1", "e-2", "e-3", "e-4"]


V1 = frozenset({"v1"})


@pytest.mark.parametrize("same_batch", [True, False])
def test_after_identify_a_visitors_events_carry_the_profile(sessions: sessionmaker[Session], same_batch: bool) -> None:
    async def scenario(committer: GroupCommitter) -> None:
        before = committer.submit(23, [event(0, visitor="v1")])
        identify = committer.submit(23, [event(1, visitor="v1", profile="p-9")], identities={"v1": ("p-9", 42)},
                                    returning=V1)
        if same_batch:
            await asyncio.gather(before, identify)
        else:
            await before
            await identify
        await committer.submit(23, [event(2, visitor="v1"), event(3, visitor="v2"), event(4, "v1", "explicit")],
                               returning=frozenset({"v1", "v2"}))
        await committer.submit(24, [event(5, visitor="v1")], returning=V1)  # another account never sees it

    run(sessions, scenario)
    events = {e["event_id"]: e for row in stored(sessions) for e in row}
    assert events["e-0"]["profile_id"] is None  # before identify: anonymous, joined downstream by visitor_id
    assert (events["e-2"]["profile_id"], events["e-2"]["list_id"]) == ("p-9", 42)
    assert events["e-3"]["profile_id"] is None
    assert events["e-4"]["profile_id"] == "explicit"
    assert events["e-5"]["profile_id"] is None
    with sessions() as session:
        assert identities_for(session, 23, ["v1", "v2"]) == {"v1": ("p-9", 42)}


def test_requests_beyond_the_waiting_bound_are_refused_at_once(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actionhooks.storage.committer.MAX_WAITING", 3)

    async def scenario(committer: GroupCommitter) -> None:
        results = await asyncio.gather(*(committer.submit(23, [event(n)]) for n in range(5)), return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["Accepted"] * 3 + ["Busy"] * 2

    run(sessions, scenario)
    assert sum(len(r) for r in stored(sessions)) == 3


def test_one_account_cannot_take_all_the_waiting_room(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actionhooks.storage.committer.MAX_WAITING_PER_ACCOUNT", 2)

    async def scenario(committer: GroupCommitter) -> None:
        flood = [committer.submit(23, [event(n)]) for n in range(4)]
        other = committer.submit(24, [event(9) | {"account_id": 24}])
        results = await asyncio.gather(*flood, other, return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["Accepted", "Accepted", "Busy", "Busy", "Accepted"]
        await committer.submit(23, [event(10)])  # room again once the batch is taken

    run(sessions, scenario)
    assert sorted(e["event_id"] for r in stored(sessions) for e in r) == ["e-0", "e-1", "e-10", "e-9"]


def test_each_sources_newest_captures_are_recorded_and_pruned_by_the_writer(sessions: sessionmaker[Session]) -> None:
    async def scenario(committer: GroupCommitter) -> None:
        for n in range(2 * CAPTURES_KEPT + 20):  # one request (and transaction) after the other
            await committer.submit(23, [event(n)], source_id=5)
        await committer.submit(23, [event(999)])  # no source: nothing recorded

    run(sessions, scenario)
    with sessions() as session:
        rows = len(session.scalars(select(SourceCapture.id).where(SourceCapture.source_id == 5)).all())
    assert CAPTURES_KEPT <= rows < 2 * CAPTURES_KEPT  # pruned after every CAPTURES_KEPT rows
    repo = SqlSourceRepository(sessions)
    with sessions.begin() as session:  # a source row, so the account-scoped read finds it
        session.add(SourceRow(id=5, account_id=23, key="src_x", name="s", kind="pixel", active=True, config={},
                              secret="s" * 16))
    newest = [c["event_id"] for c in repo.captures(23, 5)]
    assert newest == [f"e-{n}" for n in range(2 * CAPTURES_KEPT + 19, CAPTURES_KEPT + 19, -1)]


def test_closing_commits_the_transaction_under_way_and_every_queued_request_and_refuses_new_ones(
    sessions: sessionmaker[Session], pauses: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actionhooks.storage.committer.COMMIT_INTERVAL_SEC", 3600.0)  # a pause would be due
    in_writer, release = threading.Event(), threading.Event()
    signals: list[int] = []

    def hold_the_first_commit(requests: int, events: int) -> None:  # the writer thread, once committed
        in_writer.set()
        release.wait(timeout=20)  # a bound only: the test releases it

    committer = GroupCommitter(sessions, dedup_window_sec=60, on_signal=signals.append, on_batch=hold_the_first_commit)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        # Given a transaction of two requests under way and requests queued behind it
        under_way = asyncio.gather(committer.submit(23, [event(0)]), committer.submit(23, [event(7)]))
        assert await loop.run_in_executor(None, in_writer.wait, 20)
        queued = [asyncio.ensure_future(committer.submit(24 + n % 2, [event(n) | {"account_id": 24 + n % 2}]))
                  for n in range(1, 7)]
        # When the API shuts down (tasks start in the order made: the queued requests, close, a late request)
        closing = asyncio.ensure_future(committer.close())
        late = asyncio.ensure_future(committer.submit(23, [event(99)]))
        with pytest.raises(ShuttingDown):
            await late  # Then a request arriving while it closes is refused at once, with a typed error
        assert not closing.done()  # and close waits for the transaction under way
        release.set()
        await closing
        # Then when close returns, every request accepted before it was committed and has its own answer
        assert [a.queued for a in under_way.result()] == [1, 1]
        assert [q.result().queued for q in queued] == [1] * 6

    asyncio.run(scenario())
    assert sorted(e["event_id"] for row in stored(sessions) for e in row) == [f"e-{n}" for n in range(8)]
    assert sorted(set(signals)) == [23, 24, 25]  # and their route triggers were sent before the threads stopped
    assert pauses == []  # nothing can join the queued requests' transactions: no spacing pause for them


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The committer's pauses before a transaction (asyncio.sleep), each made one turn of the event loop:
    what a pause is for is that requests arriving meanwhile join the transaction, not the time it takes."""
    made: list[float] = []
    one_turn = asyncio.sleep

    async def pause(delay: float) -> None:
        made.append(delay)
        await one_turn(0)

    monkeypatch.setattr(asyncio, "sleep", pause)
    return made


CLIENTS = 8


def burst(sessions: sessionmaker[Session], extra_events: int) -> list[tuple[int, int]]:
    """CLIENTS clients start together, each sending two requests of one event one after the other; while
    the transaction of their first requests commits, another request of `extra_events` events arrives.
    Each transaction's (requests, events), in order."""
    batches: list[tuple[int, int]] = []
    arrived: list[asyncio.Future[Any]] = []
    loop: asyncio.AbstractEventLoop | None = None
    committer: GroupCommitter | None = None

    def arrive() -> None:
        assert committer is not None
        arrived.append(asyncio.ensure_future(committer.submit(23, [event(900 + n) for n in range(extra_events)])))

    def on_batch(requests: int, events: int) -> None:  # the writer thread, once a transaction committed
        batches.append((requests, events))
        if len(batches) == 1 and loop is not None:  # queued before the writer's result reaches the loop
            loop.call_soon_threadsafe(arrive)

    async def scenario(running: GroupCommitter) -> None:
        nonlocal loop, committer
        loop, committer = asyncio.get_running_loop(), running

        async def client(n: int) -> None:
            await running.submit(23, [event(n)])
            await running.submit(23, [event(100 + n)])

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        await asyncio.gather(*arrived)

    run(sessions, scenario, on_batch=on_batch)
    assert sum(len(row) for row in stored(sessions)) == 2 * CLIENTS + extra_events
    return batches


def test_after_a_shared_transaction_the_next_waits_out_the_interval_so_requests_arriving_meanwhile_join_it(
    sessions: sessionmaker[Session], pauses: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actionhooks.storage.committer.COMMIT_INTERVAL_SEC", 3600.0)  # not elapsed, however slow
    # Given a transaction of several requests, and one small request queued while it commits
    batches = burst(sessions, extra_events=1)
    # Then the next transaction did not start at once with the one request: it paused, and the clients'
    # next requests, sent meanwhile, joined it (without the pause: (1, 1) then (8, 8), one more transaction)
    assert batches == [(CLIENTS, CLIENTS), (CLIENTS + 1, CLIENTS + 1)]
    [pause] = pauses
    assert 0 < pause <= 3600


@pytest.mark.parametrize(("interval", "extra_events"), [
    (3600.0, PAUSE_BELOW_EVENTS),  # enough events wait already: a pause would only cap the rate
    (0.0, 1),  # the interval since the last transaction started has passed (a quiet spell)
], ids=["enough-events-wait", "after-a-quiet-spell"])
def test_a_transaction_with_enough_events_waiting_or_after_the_interval_starts_without_a_pause(
    sessions: sessionmaker[Session], pauses: list[float], monkeypatch: pytest.MonkeyPatch, interval: float,
    extra_events: int,
) -> None:
    monkeypatch.setattr("actionhooks.storage.committer.COMMIT_INTERVAL_SEC", interval)
    batches = burst(sessions, extra_events)
    assert batches == [(CLIENTS, CLIENTS), (1, extra_events), (CLIENTS, CLIENTS)]  # the waiting request at once
    assert pauses == []


def test_a_client_sending_one_request_after_the_other_is_never_paused(
    sessions: sessionmaker[Session], pauses: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actionhooks.storage.committer.COMMIT_INTERVAL_SEC", 3600.0)
    batches: list[tuple[int, int]] = []

    async def scenario(committer: GroupCommitter) -> None:
        for n in range(5):
            await committer.submit(23, [event(n)])

    run(sessions, scenario, on_batch=lambda requests, events: batches.append((requests, events)))
    # No transaction of its was shared, so spacing them would only cap its rate (one per interval)
    assert (batches, pauses) == ([(1, 1)] * 5, [])
