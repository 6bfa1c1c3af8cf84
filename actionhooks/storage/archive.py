"""The event archive: every accepted event kept EVENT_ARCHIVE_HOURS for backfill, and its expiry.

Written by the intake in the transaction that stores the request (a 202 means archived), as one
row holding the request's already encoded blob: archiving costs one insert per request and no
encoding, whatever the number of events (bench/history.py measures it against a row per event).

Expiry must stay cheap at any volume:
- PostgreSQL: the table is range-partitioned by day of `accepted_at`. `maintain` creates the next
  days' partitions ahead and drops a day whose last second is past retention with one DROP TABLE
  (no scan, no dead tuples, no vacuum). What landed in the default partition (no day partition
  existed yet) is deleted in bounded chunks, like SQLite.
- SQLite: the table is clustered by time (WITHOUT ROWID), so expiry deletes a contiguous range,
  EXPIRE_CHUNK rows per transaction within a time budget, as message content cleanup does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import column, delete, insert, or_, select, table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause

from actionhooks.storage.dialect import is_postgresql
from actionhooks.storage.tables import ARCHIVE_PARTITION_SCHEMA, ArchivedRequest

__all__ = ["ArchivedSlice", "Maintained", "append", "maintain", "oldest_kept", "read_slice"]

log = logging.getLogger(__name__)

DAY_SEC = 86_400
PARTITIONS_AHEAD_DAYS = 2
SIZES_PAGE = 100  # rows whose sizes are read at a time to choose a slice
EXPIRE_CHUNK = 200  # rows (requests) per delete transaction
EXPIRE_BUDGET_SEC = 1.0
# A DROP of a partition needs a short exclusive lock on the parent table; rather than queue
# behind a long backfill read (and make every intake insert queue behind the DROP), give up and
# try again at the next clean-up.
DROP_LOCK_TIMEOUT = "2s"


def append(
    session: Session, account_id: int, *, request_id: int, blob: bytes, n_events: int, accepted_at: float
) -> None:
    """Archive one accepted request (its intake blob) in the caller's transaction."""
    session.execute(
        insert(ArchivedRequest).values(
            accepted_at=accepted_at, id=request_id, account_id=account_id, n_events=n_events, events=blob
        )
    )


def oldest_kept(now: float, hours: float) -> float:
    """The earliest acceptance time the archive still promises to hold."""
    return now - hours * 3600


@dataclass(frozen=True)
class ArchivedSlice:
    """Events of consecutive archive rows, with the key of the last row read (the next cursor)."""

    events: list[dict[str, object]]
    last: tuple[float, int] | None


def read_slice(
    session: Session,
    account_id: int,
    start: float,
    end: float,
    *,
    after: tuple[float, int] | None,
    max_events: int,
) -> ArchivedSlice:
    """The account's archived events accepted in [start, end), in acceptance order, after the row
    key `after`, as many whole rows as fit `max_events` (at least one).

    Two steps, like the router's claim: the row sizes pick the rows first, so only their blobs
    are read (a row holds up to EVENTS_MAX_PER_REQUEST events).
    """
    chosen: list[tuple[float, int]] = []
    total = 0
    position = after
    while True:
        page = _sizes(session, account_id, start, end, position)
        for accepted_at, row_id, n in page:
            if chosen and total + n > max_events:
                break
            chosen.append((accepted_at, row_id))
            total += n
        else:
            if len(page) == SIZES_PAGE and total < max_events:
                position = chosen[-1]
                continue
        break
    if not chosen:
        return ArchivedSlice([], None)
    # The blobs by a range of the primary key (a row-value IN list is not an index lookup on every
    # SQLite: it scanned the account's rows once per slice); ties at the ends are filtered by key.
    wanted = set(chosen)
    rows = session.execute(
        select(ArchivedRequest.accepted_at, ArchivedRequest.id, ArchivedRequest.events)
        .where(
            ArchivedRequest.accepted_at >= chosen[0][0],
            ArchivedRequest.accepted_at <= chosen[-1][0],
            ArchivedRequest.account_id == account_id,
        )
        .order_by(ArchivedRequest.accepted_at, ArchivedRequest.id)
    )
    events: list[dict[str, object]] = [
        event for at, row_id, blob in rows if (at, row_id) in wanted for event in orjson.loads(blob)
    ]
    return ArchivedSlice(events, chosen[-1])


def _sizes(
    session: Session, account_id: int, start: float, end: float, after: tuple[float, int] | None
) -> list[tuple[float, int, int]]:
    """(accepted_at, id, n_events) of the next SIZES_PAGE rows: an index-only range scan of
    ix_event_archive_account, starting at the cursor (not at `start`: that would rescan the part
    already read on every slice)."""
    query = select(ArchivedRequest.accepted_at, ArchivedRequest.id, ArchivedRequest.n_events).where(
        ArchivedRequest.account_id == account_id, ArchivedRequest.accepted_at < end
    )
    if after is None:
        query = query.where(ArchivedRequest.accepted_at >= start)
    else:
        at, row_id = after
        query = query.where(
            ArchivedRequest.accepted_at >= max(start, at),
            or_(ArchivedRequest.accepted_at > at, ArchivedRequest.id > row_id),
        )
    rows = session.execute(query.order_by(ArchivedRequest.accepted_at, ArchivedRequest.id).limit(SIZES_PAGE))
    return [(at, row_id, n) for at, row_id, n in rows]


@dataclass(frozen=True)
class Maintained:
    """What one `maintain` run did."""

    created: int  # partitions created (PostgreSQL)
    dropped: int  # partitions dropped (PostgreSQL)
    deleted: int  # rows (requests) deleted in chunks
    finished: bool  # False: expired rows are left because the time budget ran out


def maintain(session: Session, now: float, hours: float, *, budget_sec: float = EXPIRE_BUDGET_SEC) -> Maintained:
    """Expire what is older than `hours` (0: everything) and, on PostgreSQL, create partitions ahead."""
    cutoff = oldest_kept(now, hours)
    created = dropped = 0
    if is_postgresql(session):
        created = _create_partitions(session, now)
        dropped = _drop_partitions(session, cutoff)
        # Only the default partition is expired row by row: a day partition goes whole, once its
        # last second is past (so history is kept up to a day longer than asked).
        rows = table("event_archive_default", column("accepted_at"), column("id"), schema=ARCHIVE_PARTITION_SCHEMA)
    else:
        rows = ArchivedRequest.__table__
    deleted, finished = _delete_chunks(session, rows, cutoff, budget_sec)
    return Maintained(created, dropped, deleted, finished)


def _day_start(ts: float) -> datetime:
    day = datetime.fromtimestamp(ts, UTC)
    return day.replace(hour=0, minute=0, second=0, microsecond=0)


def partition_name(day: datetime) -> str:
    return f"event_archive_{day:%Y%m%d}"


def _partitions(session: Session) -> Iterator[tuple[str, datetime]]:
    """(name, day) of the daily partitions that exist."""
    names = session.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'event_archive'"
        )
    )
    for name in names:
        suffix = name.removeprefix("event_archive_")
        if suffix.isdigit():
            yield name, datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=UTC)


def _create_partitions(session: Session, now: float) -> int:
    """Today's and the next PARTITIONS_AHEAD_DAYS days' partitions, where missing.

    A day whose rows already went to the default partition cannot get its own (PostgreSQL refuses
    to move them): it stays in the default one and expires in chunks; the next days get theirs.
    """
    existing = {day for _, day in _partitions(session)}
    created = 0
    today = _day_start(now)
    for ahead in range(PARTITIONS_AHEAD_DAYS + 1):
        day = today + timedelta(days=ahead)
        if day in existing:
            continue
        low, high = day.timestamp(), (day + timedelta(days=1)).timestamp()
        if session.scalar(
            text(f"SELECT 1 FROM {ARCHIVE_PARTITION_SCHEMA}.event_archive_default "
                 "WHERE accepted_at >= :low AND accepted_at < :high LIMIT 1"),
            {"low": low, "high": high},
        ):
            continue  # PostgreSQL cannot move those rows into a new partition: the day stays in the default one
        try:
            with session.begin_nested():
                session.execute(
                    text(
                        f"CREATE TABLE IF NOT EXISTS {ARCHIVE_PARTITION_SCHEMA}.{partition_name(day)} "
                        f"PARTITION OF event_archive FOR VALUES FROM ({low!r}) TO ({high!r})"
                    )
                )
            created += 1
        except DBAPIError as exc:
            log.warning("archive partition for %s not created (%s); its rows stay in the default one", day, exc.orig)
    session.commit()
    return created


def _drop_partitions(session: Session, cutoff: float) -> int:
    dropped = 0
    for name, day in sorted(_partitions(session), key=lambda p: p[1]):
        if (day + timedelta(days=1)).timestamp() > cutoff:
            continue
        try:
            session.execute(text(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
            session.execute(text(f"DROP TABLE {ARCHIVE_PARTITION_SCHEMA}.{name}"))
            session.commit()
            dropped += 1
        except DBAPIError as exc:
            session.rollback()
            log.warning("archive partition %s not dropped yet (%s); retrying at the next clean-up", name, exc.orig)
            break
    return dropped


def _delete_chunks(session: Session, rows: TableClause, cutoff: float, budget_sec: float) -> tuple[int, bool]:
    """Delete rows accepted before `cutoff`, EXPIRE_CHUNK per transaction, oldest first (a range of
    the time-ordered primary key), stopping after `budget_sec` (at least one chunk)."""
    deadline = time.monotonic() + budget_sec
    deleted = 0
    while True:
        # The chunk's last acceptance time bounds a range delete of the primary key (rows sharing that
        # exact time go with it: a few more than the chunk at most).
        last = session.scalar(
            select(rows.c.accepted_at)
            .where(rows.c.accepted_at < cutoff)
            .order_by(rows.c.accepted_at)
            .offset(EXPIRE_CHUNK - 1)
            .limit(1)
        )
        bound = rows.c.accepted_at <= last if last is not None else rows.c.accepted_at < cutoff
        removed = session.execute(delete(rows).where(bound, rows.c.accepted_at < cutoff)).rowcount or 0
        session.commit()
        deleted += removed
        if last is None:  # fewer than a chunk were left: all gone
            return deleted, True
        if time.monotonic() >= deadline:
            return deleted, False
