"""The event archive on SQLite and PostgreSQL: written with the intake, read by interval, expired cheaply."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage import archive
from actionhooks.storage.intake import accept_events
from actionhooks.storage.tables import ARCHIVE_PARTITION_SCHEMA, ArchivedRequest, Intake

DAY = 86_400.0


def _event(event_id: str, account_id: int = 1) -> dict[str, object]:
    return {"event_id": event_id, "event_type": "open", "account_id": account_id, "event_data": {"campaign_id": 7}}


def _archive(session: Session, at: float, ids: list[str], account_id: int = 1, request_id: int | None = None) -> None:
    blob = orjson.dumps([_event(i, account_id) for i in ids])
    rid = request_id if request_id is not None else int(at * 1000)
    archive.append(session, account_id, request_id=rid, blob=blob, n_events=len(ids), accepted_at=at)


def test_an_accepted_request_is_archived_in_the_intake_transaction_with_its_event_ids(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        accept_events(
            session, 1, [_event("a"), _event("b"), _event("a")], supplied_ids=["a", "b", "a"],
            dedup_window_sec=60, archive=True,
        )
        accept_events(session, 1, [_event("c")], supplied_ids=["c"], dedup_window_sec=60, archive=False)
        rows = session.execute(select(ArchivedRequest.id, ArchivedRequest.n_events, ArchivedRequest.events)).all()
        intake_id = session.scalars(select(Intake.id).order_by(Intake.id)).first()
    # Then the archive holds the request's kept events (the duplicate dropped), keyed by its intake id,
    # and nothing of the request sent with the archive off
    assert [(r.id, r.n_events) for r in rows] == [(intake_id, 2)]
    assert [e["event_id"] for e in orjson.loads(rows[0].events)] == ["a", "b"]


def test_a_slice_is_the_accounts_events_of_the_interval_in_acceptance_order_resumable_by_cursor(
    sessions: sessionmaker[Session],
) -> None:
    base = 1_800_000_000.0
    with sessions() as session:
        for n in range(10):
            _archive(session, base + n, [f"e{n}a", f"e{n}b"])
        _archive(session, base + 3.5, ["other"], account_id=2)
        session.commit()
        got: list[object] = []
        cursor = None
        while True:
            found = archive.read_slice(session, 1, base + 2, base + 7, after=cursor, max_events=3)
            if found.last is None:
                break
            assert len(found.events) <= 3  # whole rows that fit
            got.extend(e["event_id"] for e in found.events)
            cursor = found.last
    assert got == [f"e{n}{x}" for n in range(2, 7) for x in "ab"]


def test_a_row_larger_than_the_slice_is_still_read_whole(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        _archive(session, 1_800_000_000.0, [str(i) for i in range(50)])
        session.commit()
        found = archive.read_slice(session, 1, 0, 2e9, after=None, max_events=10)
    assert len(found.events) == 50


def test_expiry_removes_only_what_is_past_retention_in_bounded_chunks(sessions: sessionmaker[Session]) -> None:
    now = datetime(2026, 6, 10, 12, tzinfo=UTC).timestamp()
    with sessions() as session:
        archive.maintain(session, now - 5 * DAY, hours=240)  # partitions of 5 days ago (PostgreSQL)
        for n in range(archive.EXPIRE_CHUNK + 50):
            _archive(session, now - 4 * DAY + n, [f"old{n}"], request_id=n)
        _archive(session, now - 1, ["fresh"], request_id=10**6)
        session.commit()
        result = archive.maintain(session, now, hours=48)
        left = session.scalars(select(ArchivedRequest.id)).all()
    assert left == [10**6]
    assert result.finished
    if session.get_bind().dialect.name == "sqlite":
        assert result.deleted == archive.EXPIRE_CHUNK + 50
    else:  # the old day lived in its own partition (or the default one): dropped whole or chunked
        assert result.dropped + result.deleted >= 1


def test_postgresql_keeps_a_partition_per_day_ahead_and_drops_a_past_day_without_touching_others(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            return  # SQLite has no partitions: covered by the chunked expiry test above
        now = datetime(2026, 6, 10, 12, tzinfo=UTC).timestamp()
        days = [datetime(2026, 6, 10, tzinfo=UTC) + timedelta(days=d) for d in (-3, -2, -1, 0, 1, 2)]
        archive.maintain(session, now - 3 * DAY, hours=1000)
        archive.maintain(session, now, hours=1000)
        names = set(session.scalars(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": ARCHIVE_PARTITION_SCHEMA}))
        assert {archive.partition_name(d) for d in days} <= names
        for d in days:
            _archive(session, d.timestamp() + 3600, [f"{d:%d}"], request_id=int(d.timestamp()))
        session.commit()
        # When retention ends 36 hours ago: the days that ended before that are dropped whole
        result = archive.maintain(session, now, hours=36)
        names = set(session.scalars(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": ARCHIVE_PARTITION_SCHEMA}))
        left = sorted(session.scalars(select(ArchivedRequest.events)))
        default_rows = session.scalar(
            text(f"SELECT count(*) FROM {ARCHIVE_PARTITION_SCHEMA}.event_archive_default")
        )
    assert result.dropped == 2
    assert result.deleted == 0
    assert archive.partition_name(days[0]) not in names
    assert archive.partition_name(days[1]) not in names
    assert archive.partition_name(days[2]) in names  # ended 12 h ago: kept until its last second is past
    assert len(left) == 4
    assert default_rows == 0


def test_rows_accepted_before_any_partition_existed_go_to_the_default_one_and_expire_in_chunks(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        early = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
        _archive(session, early, ["early"], request_id=1)
        _archive(session, early + 10 * DAY + 3600, ["today, before the scheduler ran"], request_id=2)
        session.commit()
        assert session.scalar(text(f"SELECT count(*) FROM {ARCHIVE_PARTITION_SCHEMA}.event_archive_default")) == 2
        result = archive.maintain(session, early + 10 * DAY + 7200, hours=24)
        # Then the expired row goes in a chunk; the day that already has rows in the default partition
        # keeps them there (no partition of its own), and the next days get theirs
        assert (result.deleted, result.created) == (1, 2)
        names = set(session.scalars(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": ARCHIVE_PARTITION_SCHEMA}))
        assert "event_archive_20200111" not in names
        assert {"event_archive_20200112", "event_archive_20200113"} <= names
        assert session.scalars(select(ArchivedRequest.id)).all() == [2]


def test_captured_events_are_archived_by_the_group_commit_too(sessions: sessionmaker[Session]) -> None:
    from actionhooks.storage.committer import GroupCommitter

    committer = GroupCommitter(sessions, dedup_window_sec=60, on_signal=lambda _account: None, archive=True)

    async def capture() -> None:
        try:
            await committer.submit(1, [_event("pixel-1"), _event("pixel-2")])
        finally:
            await committer.close()

    asyncio.run(capture())
    with sessions() as session:
        blobs = session.scalars(select(ArchivedRequest.events)).all()
    assert [e["event_id"] for blob in blobs for e in orjson.loads(blob)] == ["pixel-1", "pixel-2"]
