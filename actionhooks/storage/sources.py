"""Capture sources and visitor identities in SQL: written by the admin API, read by the capture path.

The public `key` is 128 random bits (base32, `src_` prefix): knowing one source's URL tells nothing
about another's. Identities map (account, visitor id) to the profile the visitor identified as; the
capture path reads and writes them inside the same transaction as the events (storage/committer.py),
so an event accepted after an `identify` was durable always sees it.

Recent captures: the capture path also records, in the same transaction, a short summary of the
newest events of each source, so the console can show a source's last captured events: captured
events themselves live only in intake blobs the router consumes, which no query per source could
read cheaply. One row per source and transaction holds the summaries of its newest CAPTURES_KEPT
events, so a batch costs one single-row insert per source whatever its size. A source's rows are
pruned to its newest CAPTURES_KEPT once it gained CAPTURES_KEPT more, so it holds at most about
twice that per capture writer (API process); readers take the newest events.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Collection, Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.capture.model import Source, SourceSpec
from actionhooks.errors import NotFound
from actionhooks.storage.tables import Source as SourceRow
from actionhooks.storage.tables import SourceCapture, VisitorIdentity
from actionhooks.storage.upsert import upsert

__all__ = ["CAPTURES_KEPT", "SqlSourceRepository", "identities_for", "new_key", "put_captures", "put_identities"]

Identity = tuple[str, int | None]  # (profile_id, list_id)
CAPTURES_KEPT = 50  # recent captures kept per source: what the console shows, a bounded cost per batch
_SUMMARY_FIELDS = ("url", "name", "visitor_id", "ip", "user_agent", "referer", "is_bot", "proxy")
_SUMMARY_TEXT = 300  # characters of each summarised text kept
# A Core insert built once: the ORM's bulk insert path cost the capture writer ~30% of its time per batch.
_PUT_CAPTURES = insert(SourceCapture.__table__)


def new_key() -> str:
    """A public source key: `src_` + 128 random bits in lower-case base32 (URL-safe, no padding)."""
    return "src_" + base64.b32encode(os.urandom(16)).decode("ascii").rstrip("=").lower()


def new_secret() -> str:
    """A link-signing secret when the user gave none: 256 random bits."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii").rstrip("=")


class SqlSourceRepository:
    """Sources of one database; each call is one transaction, every query scoped by account."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, account_id: int, spec: SourceSpec) -> Source:
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            row = SourceRow(account_id=account_id, key=new_key(), created_at=now, updated_at=now)
            _write(row, spec)
            session.add(row)
            session.flush()
            return to_source(row)

    def get(self, account_id: int, source_id: int) -> Source:
        with self._sessions.begin() as session:
            return to_source(_row(session, account_id, source_id))

    def list(self, account_id: int) -> list[Source]:
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(SourceRow).where(SourceRow.account_id == account_id).order_by(SourceRow.id)
            )
            return [to_source(row) for row in rows]

    def replace(self, account_id: int, source_id: int, spec: SourceSpec) -> Source:
        with self._sessions.begin() as session:
            row = _row(session, account_id, source_id, lock=True)
            _write(row, spec)
            row.updated_at = datetime.now(UTC)
            session.flush()
            return to_source(row)

    def delete(self, account_id: int, source_id: int) -> str:
        """Delete; returns the key it had (so caches can forget it)."""
        with self._sessions.begin() as session:
            row = _row(session, account_id, source_id)
            key = row.key
            session.execute(delete(SourceRow).where(SourceRow.id == source_id))
            session.execute(delete(SourceCapture).where(SourceCapture.source_id == source_id))
            return key

    def captures(self, account_id: int, source_id: int) -> list[dict[str, object]]:
        """The source's newest recorded captures (at most CAPTURES_KEPT), newest first; NotFound for
        another account's source."""
        with self._sessions.begin() as session:
            _row(session, account_id, source_id)
            rows = session.execute(
                select(SourceCapture.captured_at, SourceCapture.events)
                .where(SourceCapture.source_id == source_id, SourceCapture.account_id == account_id)
                .order_by(SourceCapture.id.desc())
                .limit(CAPTURES_KEPT)
            )
            found: list[dict[str, object]] = []
            for captured_at, events in rows:
                found += [{**event, "captured_at": captured_at} for event in reversed(events)]
                if len(found) >= CAPTURES_KEPT:
                    break
            return found[:CAPTURES_KEPT]

    def by_key(self, key: str) -> Source | None:
        with self._sessions() as session:
            row = session.scalars(select(SourceRow).where(SourceRow.key == key)).first()
            return None if row is None else to_source(row)


def to_source(row: SourceRow) -> Source:
    spec = SourceSpec.model_validate(
        {**row.config, "name": row.name, "kind": row.kind, "active": row.active, "secret": row.secret}
    )
    return Source(id=row.id, account_id=row.account_id, key=row.key, created_at=_utc(row.created_at),
                  updated_at=_utc(row.updated_at), spec=spec)


def _row(session: Session, account_id: int, source_id: int, *, lock: bool = False) -> SourceRow:
    query = select(SourceRow).where(SourceRow.id == source_id, SourceRow.account_id == account_id)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("source", source_id)
    return row


def _write(row: SourceRow, spec: SourceSpec) -> None:
    data = spec.model_dump(mode="json")
    row.name, row.kind, row.active = data.pop("name"), data.pop("kind"), data.pop("active")
    row.secret = data.pop("secret") or new_secret()
    row.config = data


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def identities_for(session: Session, account_id: int, visitor_ids: Iterable[str]) -> dict[str, Identity]:
    """visitor id -> (profile_id, list_id) of those of `visitor_ids` that identified in `account_id`."""
    wanted = sorted(set(visitor_ids))
    found: dict[str, Identity] = {}
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(VisitorIdentity.visitor_id, VisitorIdentity.profile_id, VisitorIdentity.list_id).where(
                VisitorIdentity.account_id == account_id,
                VisitorIdentity.visitor_id.in_(wanted[start : start + 500]),
            )
        )
        for visitor_id, profile_id, list_id in rows:
            found[visitor_id] = (profile_id, list_id)
    return found


def put_identities(session: Session, account_id: int, identities: dict[str, Identity], now: float) -> None:
    """Record (or replace: the latest identify wins) who each visitor is; the caller commits."""
    rows = [
        {"account_id": account_id, "visitor_id": v, "profile_id": p, "list_id": lid, "identified_at": now}
        for v, (p, lid) in identities.items()
    ]
    upsert(session, VisitorIdentity, rows, ("account_id", "visitor_id"))


def put_captures(session: Session, account_id: int, by_source: dict[int, list[dict[str, object]]], now: float,
                 *, prune: Collection[int] = ()) -> None:
    """Record the newest CAPTURES_KEPT events of each source of a batch (one row per source); the caller
    commits. Sources in `prune` are cut back to their newest CAPTURES_KEPT rows in the same transaction
    (the capture writer names a source once it wrote CAPTURES_KEPT rows since its last prune)."""
    rows = [{"source_id": source_id, "account_id": account_id, "captured_at": now,
             "events": [_summary(event) for event in events[-CAPTURES_KEPT:]]}
            for source_id, events in by_source.items() if events]
    if rows:
        session.execute(_PUT_CAPTURES, rows)
    for source_id in prune:
        oldest_kept = session.scalars(
            select(SourceCapture.id).where(SourceCapture.source_id == source_id)
            .order_by(SourceCapture.id.desc()).offset(CAPTURES_KEPT - 1).limit(1)
        ).first()
        if oldest_kept is not None:
            session.execute(delete(SourceCapture).where(SourceCapture.source_id == source_id,
                                                        SourceCapture.id < oldest_kept))


def _summary(event: dict[str, object]) -> dict[str, object]:
    """What the console shows of a captured event: ids, type, and bounded texts of its request."""
    data = event.get("event_data")
    data = data if isinstance(data, dict) else {}
    summary: dict[str, object] = {"event_id": str(event.get("event_id", ""))[:64],
                                  "event_type": str(event.get("event_type", ""))[:64],
                                  "profile_id": _short(event.get("profile_id")), "list_id": event.get("list_id")}
    for name in _SUMMARY_FIELDS:
        if data.get(name) is not None:
            summary[name] = _short(data[name])
    return summary


def _short(value: object) -> object:
    return value[:_SUMMARY_TEXT] if isinstance(value, str) else value
