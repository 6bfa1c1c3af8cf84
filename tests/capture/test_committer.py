"""Group commit: concurrent requests share one transaction; each returns only once durable; visitors join."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.capture.committer import GroupCommitter
from actionhooks.storage.sources import CAPTURES_KEPT, SqlSourceRepository, identities_for
from actionhooks.storage.tables import Intake, SourceCapture
from actionhooks.storage.tables import Source as SourceRow


def event(n: int, visitor: str | None = None, profile: str | None = None) -> dict[str, Any]:
    return {"event_id": f"e-{n}", "event_type": "pixel", "event_date": "2026-01-01T00:00:00.000000000Z",
            "account_id": 23, "list_id": 1, "profile_id": profile, "is_test": False,
            "event_data": {"visitor_id": visitor, "pixel_id": 5}}


def stored(sessions: sessionmaker[Session]) -> list[list[dict[str, Any]]]:
    with sessions() as session:
        return [orjson.loads(blob) for blob in session.scalars(select(Intake.events).order_by(Intake.id))]


def run(sessions: sessionmaker[Session], scenario: Any) -> list[int]:
    signals: list[int] = []
    committer = GroupCommitter(sessions, dedup_window_sec=60, on_signal=signals.append)
    try:
        asyncio.run(scenario(committer))
    finally:
        committer.close()
    return signals


def test_concurrent_requests_are_written_in_one_transaction(sessions: sessionmaker[Session]) -> None:
    async def scenario(committer: GroupCommitter) -> None:
        await asyncio.gather(*(committer.submit(23, [event(n)]) for n in range(200)))

    signals = run(sessions, scenario)
    rows = stored(sessions)
    assert sum(len(r) for r in rows) == 200  # every request's event is durable when gather returns
    assert len(rows) < 10  # grouped, not one intake row (transaction) per request
    assert signals == [23]  # one route trigger for the burst


def test_a_failed_transaction_fails_only_its_accounts_requests(sessions: sessionmaker[Session]) -> None:
    async def scenario(committer: GroupCommitter) -> None:
        deep: dict[str, Any] = {}
        for _ in range(300):
            deep = {"x": deep}
        bad = event(1) | {"event_data": {"visitor_id": None, "x": deep}}  # orjson writes 254 levels at most
        other = event(2) | {"account_id": 24}
        results = await asyncio.gather(committer.submit(23, [event(0)]), committer.submit(23, [bad]),
                                       committer.submit(24, [other]), return_exceptions=True)
        assert [isinstance(r, Exception) for r in results] == [True, True, False]

    run(sessions, scenario)
    assert [[e["event_id"] for e in row] for row in stored(sessions)] == [["e-2"]]  # the other account's


V1 = frozenset({"v1"})


@pytest.mark.parametrize("same_batch", [True, False])
def test_after_identify_a_visitors_events_carry_the_profile(sessions: sessionmaker[Session], same_batch: bool) -> None:
    async def scenario(committer: GroupCommitter) -> None:
        before = committer.submit(23, [event(0, visitor="v1")])
        identify = committer.submit(23, [event(1, visitor="v1", profile="p-9")], {"v1": ("p-9", 42)}, V1)
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
    monkeypatch.setattr("actionhooks.capture.committer.MAX_WAITING", 3)

    async def scenario(committer: GroupCommitter) -> None:
        results = await asyncio.gather(*(committer.submit(23, [event(n)]) for n in range(5)), return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["Busy"] * 2

    run(sessions, scenario)
    assert sum(len(r) for r in stored(sessions)) == 3


def test_one_account_cannot_take_all_the_waiting_room(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actionhooks.capture.committer.MAX_WAITING_PER_ACCOUNT", 2)

    async def scenario(committer: GroupCommitter) -> None:
        flood = [committer.submit(23, [event(n)]) for n in range(4)]
        other = committer.submit(24, [event(9) | {"account_id": 24}])
        results = await asyncio.gather(*flood, other, return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "Busy", "Busy", "NoneType"]
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
