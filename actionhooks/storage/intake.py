"""The intake: accepted events waiting for a router, with the dedup ids and route signals beside them.

This module is the one writer of the `intake`, `seen_events` and `route_signals` tables, for the
API (POST /events and capture, through the group committer), the router, the scheduler and quarantine
replays alike.

Accepting events (dedupe by event_id, store the requests of a group commit as one intake row, raise
the route signal) happens in one transaction, so a 202 means the events are on disk (SQLite WAL or
PostgreSQL) and nothing of a rejected request is stored. The route signal lets the API send one
trigger per burst instead of one per request: it is set here only if absent, and the router removes
it before its last look at the intake, so an event stored after the removal raises it again. A
router of small intake rows keeps the signal raised until its successor is due instead
(`hold_signal`, the router's pace): events accepted meanwhile send no trigger and are routed together.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Insert, delete, insert, select
from sqlalchemy.orm import Session

from actionhooks.errors import HookValidationError
from actionhooks.storage import archive as event_archive
from actionhooks.storage.dialect import insert_for, is_postgresql
from actionhooks.storage.tables import Intake, RouteSignal, SeenEvent

__all__ = [
    "Accepted", "Offered", "accept_events", "accept_requests", "clear_signal", "forget_seen", "hold_signal",
    "remove", "requeue", "stage", "stale_work",
]

CLAIM_ROWS = 1000  # intake rows a router looks at per claim
DEDUP_CHUNK = 5000  # event ids per dedup statement (3 bound parameters each)


@dataclass(frozen=True)
class Offered:
    """One request's validated events (each with an event_id), the ids among them its sender supplied
    (only those can be repeats: ids we assigned are new UUIDs), and its accept span's traceparent."""

    events: list[dict[str, Any]]
    supplied_ids: list[str]
    trace_context: str | None = None


@dataclass(frozen=True)
class Accepted:
    """Outcome of one request: how many were queued, which were duplicates, and whether its transaction
    raised the route signal (the caller then sends one route trigger for the whole transaction)."""

    queued: int
    duplicates: list[str]
    signal_raised: bool


# The two statements of every intake row, built once on the Core tables with their values as
# execution parameters: SQLAlchemy then finds them in its compiled cache at the cost of a cache key
# without values. An ORM `insert(Intake).values(events=blob)` went through the ORM bulk path and
# walked the values (the blob included) for its cache key each time: 1.25 ms CPU per 17-event commit
# before, 0.34 ms after (measured in process over 1,000 commits; the group commit runs these for
# every transaction).
_STORE = insert(Intake.__table__).returning(Intake.__table__.c.id)


@functools.cache
def _signal(dialect_insert: Callable[..., Insert]) -> Insert:
    """The route signal's insert-if-absent for a dialect's `insert` (storage/dialect.py), built once."""
    return dialect_insert(RouteSignal.__table__).on_conflict_do_nothing().returning(RouteSignal.account_id)


def _first_sightings(session: Session, account_id: int, ids: list[str], now: float, window_sec: float) -> set[str]:
    """The event_ids of `ids` (distinct) not accepted within the dedup window (and record them as seen now).

    One statement per DEDUP_CHUNK ids: a group commit joins many requests, and one statement for all
    their ids would pass SQLite's 32,766 and PostgreSQL's 65,535 bound parameters (3 per id)."""
    fresh: set[str] = set()
    for start in range(0, len(ids), DEDUP_CHUNK):
        ins = insert_for(session)(SeenEvent).values(
            [{"account_id": account_id, "event_id": i, "seen_at": now} for i in ids[start:start + DEDUP_CHUNK]]
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[SeenEvent.account_id, SeenEvent.event_id],
            set_={"seen_at": ins.excluded.seen_at},
            where=SeenEvent.seen_at < now - window_sec,
        ).returning(SeenEvent.event_id)
        fresh.update(session.scalars(stmt))
    return fresh


def accept_events(
    session: Session,
    account_id: int,
    events: list[dict[str, Any]],
    *,
    supplied_ids: list[str],
    dedup_window_sec: float,
    trace_context: str | None = None,
    archive: bool = False,
) -> Accepted:
    """`accept_requests` for one request (the storage tests' and benchmarks' way in)."""
    offered = [Offered(events, supplied_ids, trace_context)]
    return accept_requests(session, account_id, offered, dedup_window_sec=dedup_window_sec, archive=archive)[0]


def accept_requests(
    session: Session, account_id: int, requests: list[Offered], *, dedup_window_sec: float, archive: bool = False
) -> list[Accepted]:
    """Store the events of `requests` (one account's, in arrival order) for routing; commit; report
    what happened to each request.

    One transaction for all (the group commit, storage/committer.py): dedup as if they came one after
    the other (an id supplied twice is queued once, for the first request), and one intake row for
    each run of requests with the same trace context (tracing off: one row), so the route span still
    links to every accept span. `archive`: keep them in the event archive too. A request whose events
    cannot be encoded raises HookValidationError, and nothing of the transaction is stored.
    """
    now = time.time()
    # Sorted: concurrent transactions (another API process's) lock the same ids in the same order, so
    # on PostgreSQL they wait for each other instead of deadlocking.
    supplied = sorted({event_id for offered in requests for event_id in offered.supplied_ids})
    fresh = _first_sightings(session, account_id, supplied, now, dedup_window_sec)
    outcomes: list[tuple[int, list[str]]] = []
    rows: list[_Row] = []
    kept: set[str] = set()
    for offered in requests:
        keep, duplicates = _new_events(offered, fresh, kept)
        outcomes.append((len(keep), duplicates))
        if not keep:
            continue
        if not rows or rows[-1].trace_context != offered.trace_context:
            rows.append(_Row(offered.trace_context))
        rows[-1].blobs.append(_dump(offered.events, keep))
        rows[-1].n_events += len(keep)
    raised = False
    for row in rows:
        raised |= stage(session, account_id, row.blob(), row.n_events, now, archive=archive,
                        trace_context=row.trace_context)
    session.commit()
    return [Accepted(queued=queued, duplicates=duplicates, signal_raised=raised) for queued, duplicates in outcomes]


def _new_events(offered: Offered, fresh: set[str], kept: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The events of `offered` to queue and the ids of its duplicates; `kept` (ids queued by this
    transaction so far) gains the former."""
    supplied = set(offered.supplied_ids)
    keep, duplicates = [], []
    for event in offered.events:
        event_id = event["event_id"]
        if event_id in kept or (event_id in supplied and event_id not in fresh):
            duplicates.append(event_id)
            continue
        kept.add(event_id)
        keep.append(event)
    return keep, duplicates


@dataclass(slots=True)
class _Row:
    """One intake row in the making: consecutive requests of one trace context."""

    trace_context: str | None
    blobs: list[bytes] = field(default_factory=list)  # each request's kept events, encoded (non-empty arrays)
    n_events: int = 0

    def blob(self) -> bytes:
        """The requests' arrays joined as one, without decoding them."""
        blobs = self.blobs
        return blobs[0] if len(blobs) == 1 else b"[" + b",".join(blob[1:-1] for blob in blobs) + b"]"


def stage(
    session: Session,
    account_id: int,
    blob: bytes,
    n_events: int,
    now: float,
    *,
    archive: bool,
    trace_context: str | None = None,
) -> bool:
    """Write one intake row (and its archive copy when `archive`), raise the route signal, in the
    caller's transaction; True when the signal was raised (the caller sends the route trigger once
    it has committed). Also the way the engine captures its own operational events
    (worker/control.py), so they are routed, and archived, like any other."""
    stored = {"account_id": account_id, "events": blob, "n_events": n_events, "created_at": now,
              "trace_context": trace_context}
    request_id = session.execute(_STORE, stored).scalar_one()
    if archive:  # same transaction: a 202 means archived too (storage/archive.py)
        event_archive.append(session, account_id, request_id=request_id, blob=blob, n_events=n_events, accepted_at=now)
    signalled = session.execute(_signal(insert_for(session)), {"account_id": account_id, "signalled_at": now})
    return signalled.first() is not None


def _dump(events: list[dict[str, Any]], keep: list[dict[str, Any]]) -> bytes:
    """`keep` as stored; HookValidationError naming each event (index in `events`) that orjson cannot encode.

    orjson reads 1,024 levels of nesting but writes only 254, so a deeply nested event that parsed
    can still fail here (before anything is committed): a 422, not a 500.
    """
    try:
        return orjson.dumps(keep)
    except orjson.JSONEncodeError:
        errors = []
        for index, event in enumerate(events):
            try:
                orjson.dumps([event])
            except orjson.JSONEncodeError as exc:
                errors.append(((index,), f"nested too deeply to be stored ({exc})"))
        raise HookValidationError(errors) from None


def clear_signal(session: Session, account_id: int) -> bool:
    """Called by the router once it has claimed all that waited, in the transaction of that claim (see
    the module docstring). True when the router must look at the intake once more after committing:
    on PostgreSQL an acceptance may have committed after the claim, found the signal still raised
    and sent no trigger. On SQLite none can have: the router's transaction has held the write lock
    since its claim (BEGIN IMMEDIATE, storage/db.py), so the look would only cost a transaction."""
    session.execute(delete(RouteSignal).where(RouteSignal.account_id == account_id))
    return is_postgresql(session)


def hold_signal(session: Session, account_id: int, *, started: float, until: float) -> bool:
    """Keep the account's route signal raised until `until`, for a router that started at `started` and
    will send its successor's trigger due then; in the caller's transaction. True when the caller is
    to send that trigger: False when the signal was raised after `started` (by an acceptance whose
    trigger is on its way, or by a router that started later and holds it already), so the routers
    of an account merge into one paced chain. A held signal dated `until` is not stale before then
    (`stale_work`): a successor's lost trigger is found by the scheduler once that time is past.
    """
    stmt = insert_for(session)(RouteSignal).values(account_id=account_id, signalled_at=until)
    stmt = stmt.on_conflict_do_update(
        index_elements=[RouteSignal.account_id],
        set_={"signalled_at": stmt.excluded.signalled_at},
        where=RouteSignal.signalled_at <= started,
    ).returning(RouteSignal.account_id)
    return session.execute(stmt).first() is not None


def claim(
    session: Session, account_id: int, max_events: int
) -> tuple[list[int], list[tuple[float, dict[str, Any]]], list[str | None], bool]:
    """For the router: up to `max_events` events of the oldest intake rows, each with the time it was accepted,
    the rows' trace contexts (tracing.py: the route span links to their accept spans), and whether
    rows were left waiting (the router then claims again). The caller removes the rows (`remove`)
    in the same transaction once they are routed.

    Two steps, so only the blobs of the chosen rows are ever read: the first row counts pick the
    rows that fit (reading 1,000 blobs of 1,000 events each would hold ~300 MB in the worker), the
    second locks and reads just those (rows another router holds are skipped).
    """
    sizes = session.execute(
        select(Intake.id, Intake.n_events).where(Intake.account_id == account_id).order_by(Intake.id)
        .limit(CLAIM_ROWS)
    ).all()
    chosen: list[int] = []
    total = 0
    for row_id, n in sizes:
        if chosen and total + n > max_events:
            break
        chosen.append(row_id)
        total += n
    if not chosen:
        return [], [], [], False
    stmt = (
        select(Intake.id, Intake.events, Intake.created_at, Intake.trace_context)
        .where(Intake.id.in_(chosen))
        .order_by(Intake.id)
        .with_for_update(skip_locked=True)  # SQLite compiles no locking clause: one writer at a time
    )
    ids: list[int] = []
    events: list[tuple[float, dict[str, Any]]] = []
    traces: list[str | None] = []
    for row_id, blob, accepted_at, trace_context in session.execute(stmt):
        ids.append(row_id)
        traces.append(trace_context)
        events.extend((accepted_at, event) for event in orjson.loads(blob))
    return ids, events, traces, len(chosen) < len(sizes) or len(sizes) == CLAIM_ROWS


def remove(session: Session, ids: Iterable[int]) -> None:
    """Drop routed intake rows, in the router's transaction (the one that wrote what they became)."""
    session.execute(delete(Intake).where(Intake.id.in_(list(ids))))


def requeue(session: Session, account_id: int, events: Iterable[tuple[bytes, float]]) -> None:
    """Put single events back (each its encoded JSON and the time it was first accepted), one intake
    row each, in the caller's transaction: quarantine replays. The caller commits and triggers a router."""
    rows = [
        {"account_id": account_id, "events": b"[" + blob + b"]", "n_events": 1, "created_at": accepted_at}
        for blob, accepted_at in events
    ]
    if rows:
        session.execute(insert(Intake), rows)


def forget_seen(session: Session, before: float) -> None:
    """Expire the dedup ids seen before `before` (the scheduler's clean-up; the caller commits)."""
    session.execute(delete(SeenEvent).where(SeenEvent.seen_at < before))


def stale_work(session: Session, older_than: float) -> set[int]:
    """Accounts whose intake or signal waited longer than `older_than` (a lost trigger or a crashed router)."""
    intake = select(Intake.account_id).where(Intake.created_at < older_than).distinct()
    signals = select(RouteSignal.account_id).where(RouteSignal.signalled_at < older_than)
    return set(session.scalars(intake)) | set(session.scalars(signals))
