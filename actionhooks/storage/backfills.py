"""Backfill jobs in SQL: created by the API, advanced slice by slice by the worker, settled by the scheduler.

A job's progress that the user sees is partly its own (scanned, matched: committed with each
slice) and partly the state of the batches it made (delivered: the batch row is gone; failed: on
the failed list; pending: still queued), read from `deliveries` through `backfill_batches`, so no
counter can drift from what really happened to the batches.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from actionhooks.errors import NotFound
from actionhooks.storage import deliveries
from actionhooks.storage.hooks import lock_existing
from actionhooks.storage.tables import Backfill, BackfillBatch, Delivery

__all__ = [
    "ACTIVE",
    "FINISHED",
    "Progress",
    "cancel",
    "claim",
    "create",
    "fail",
    "finish_scan",
    "open_jobs",
    "outstanding_batches",
    "progress",
    "record_slice",
    "release",
    "settle",
    "stalled",
]

ACTIVE = ("queued", "running")  # the worker has archive left to scan for these
OPEN = (*ACTIVE, "delivering")
FINISHED = ("done", "cancelled", "failed")


@dataclass(frozen=True)
class Progress:
    """A job as GET /backfills/{id} shows it."""

    id: int
    hook_id: int
    state: str  # running | done | cancelled | failed (spec); `phase` says which part of running
    phase: str  # queued | scanning | delivering | finished
    from_at: float
    to_at: float
    scanned: int
    matched: int
    delivered: int
    failed: int
    pending: int
    error: str | None
    created_at: float
    finished_at: float | None


def _phase(state: str) -> tuple[str, str]:
    return {
        "queued": ("running", "queued"),
        "running": ("running", "scanning"),
        "delivering": ("running", "delivering"),
    }.get(state, (state, "finished"))


def open_jobs(session: Session, hook_id: int) -> int:
    """Jobs of the hook not finished yet (the API bounds how many may queue)."""
    return int(session.scalar(select(func.count()).where(Backfill.hook_id == hook_id, Backfill.state.in_(OPEN))) or 0)


def create(session: Session, hook_id: int, account_id: int, *, from_at: float, to_at: float, now: float) -> int:
    """A new job, queued: its first task run starts it unless an earlier scan of the hook is
    unfinished (`claim` decides, so two jobs created at once never both run); the caller commits."""
    job_id = session.execute(
        insert(Backfill)
        .values(
            hook_id=hook_id, account_id=account_id, from_at=from_at, to_at=to_at,
            state="queued", scanned=0, matched=0, lease_until=0.0,
            touched_at=now, created_at=now,
        )
        .returning(Backfill.id)
    ).scalar_one()  # NoResultFound, not a silent None, if the database returned no row
    return int(job_id)


def _job(session: Session, account_id: int, job_id: int) -> Backfill:
    job = session.scalar(select(Backfill).where(Backfill.id == job_id, Backfill.account_id == account_id))
    if job is None:
        raise NotFound("backfill", job_id)
    return job


def progress(session: Session, account_id: int, job_id: int) -> Progress:
    """The account's job; NotFound for a missing job or another account's."""
    job = _job(session, account_id, job_id)
    counts = {"delivered": 0, "failed": 0, "pending": 0}
    rows = session.execute(
        select(Delivery.status, func.sum(BackfillBatch.n_events))
        .select_from(BackfillBatch)
        .outerjoin(Delivery, Delivery.id == BackfillBatch.delivery_id)
        .where(BackfillBatch.backfill_id == job_id)
        .group_by(Delivery.status)
    )
    for status, n in rows:
        counts["delivered" if status is None else status] += int(n or 0)
    state, phase = _phase(job.state)
    return Progress(
        id=job.id, hook_id=job.hook_id, state=state, phase=phase, from_at=job.from_at, to_at=job.to_at,
        scanned=job.scanned, matched=job.matched, error=job.error, created_at=job.created_at,
        finished_at=job.finished_at, **counts,
    )


def cancel(session: Session, account_id: int, job_id: int, now: float) -> bool:
    """Stop the job and withdraw its batches not sent yet (one being sent right now still goes).

    Returns False when the job had already finished (done or failed); cancelling twice is fine.
    The caller commits.
    """
    job = _job(session, account_id, job_id)
    if job.state in FINISHED:
        return job.state == "cancelled"
    lock_existing(session, [job.hook_id])  # the pipeline's lock order before touching the hook's batches
    withdrawn = deliveries.withdraw(
        session, select(BackfillBatch.delivery_id).where(BackfillBatch.backfill_id == job_id), now
    )
    if withdrawn:
        session.execute(delete(BackfillBatch).where(BackfillBatch.delivery_id.in_(withdrawn)))
    session.execute(
        update(Backfill).where(Backfill.id == job_id).values(state="cancelled", finished_at=now, lease_until=0.0)
    )
    return True


def claim(session: Session, job_id: int, now: float, lease_sec: float) -> Backfill | None:
    """Take the job for one task run: None when it is finished, leased by another worker, or queued
    behind an earlier unfinished scan of its hook. A queued job that may start becomes running."""
    job = session.get(Backfill, job_id)
    if job is None or job.state not in ACTIVE or job.lease_until > now:
        return None
    if job.state == "queued":
        ahead = session.scalar(
            select(func.count()).where(
                Backfill.hook_id == job.hook_id, Backfill.state.in_(ACTIVE), Backfill.id < job.id
            )
        )
        if ahead:
            return None
    taken = session.execute(
        update(Backfill)
        .where(Backfill.id == job_id, Backfill.state.in_(ACTIVE), Backfill.lease_until <= now)
        .values(state="running", lease_until=now + lease_sec, touched_at=now)
    )
    if taken.rowcount != 1:
        return None
    session.refresh(job)
    return job


def record_slice(
    session: Session,
    job: Backfill,
    *,
    cursor: tuple[float, int],
    scanned: int,
    matched: int,
    batches: list[tuple[str, int]],
    now: float,
    lease_sec: float,
) -> bool:
    """Advance the job past one slice and link the batches it made; False (the caller rolls back)
    when the job was cancelled meanwhile."""
    advanced = session.execute(
        update(Backfill)
        .where(Backfill.id == job.id, Backfill.state == "running")
        .values(
            cursor_at=cursor[0], cursor_id=cursor[1], scanned=Backfill.scanned + scanned,
            matched=Backfill.matched + matched, touched_at=now, lease_until=now + lease_sec,
        )
    )
    if advanced.rowcount != 1:
        return False
    if batches:
        session.execute(
            insert(BackfillBatch), [{"delivery_id": d, "backfill_id": job.id, "n_events": n} for d, n in batches]
        )
    return True


def release(session: Session, job_id: int) -> None:
    session.execute(update(Backfill).where(Backfill.id == job_id).values(lease_until=0.0))


def finish_scan(session: Session, job: Backfill, now: float) -> int | None:
    """The whole interval is scanned: the job waits for its batches; returns the hook's next queued job."""
    session.execute(
        update(Backfill)
        .where(Backfill.id == job.id, Backfill.state == "running")
        .values(state="delivering", lease_until=0.0, touched_at=now)
    )
    return session.scalar(
        select(Backfill.id).where(Backfill.hook_id == job.hook_id, Backfill.state == "queued").order_by(Backfill.id)
    )


def fail(session: Session, job_id: int, error: str, now: float) -> None:
    session.execute(
        update(Backfill)
        .where(Backfill.id == job_id, Backfill.state.in_(OPEN))
        .values(state="failed", error=error, finished_at=now, lease_until=0.0)
    )


def outstanding_batches(session: Session, hook_id: int) -> int:
    """Backfill batches of the hook made and not sent yet (pending, due or retrying)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .join(BackfillBatch, BackfillBatch.delivery_id == Delivery.id)
            .where(Delivery.hook_id == hook_id, Delivery.status == "pending")
        )
        or 0
    )


def settle(session: Session, now: float) -> int:
    """Mark done the delivering jobs none of whose batches is pending any more; returns how many."""
    finished = 0
    for job_id in session.scalars(select(Backfill.id).where(Backfill.state == "delivering")):
        waiting = session.scalar(
            select(func.count())
            .select_from(BackfillBatch)
            .join(Delivery, Delivery.id == BackfillBatch.delivery_id)
            .where(BackfillBatch.backfill_id == job_id, Delivery.status == "pending")
        )
        if not waiting:
            session.execute(
                update(Backfill)
                .where(Backfill.id == job_id, Backfill.state == "delivering")
                .values(state="done", finished_at=now)
            )
            finished += 1
    return finished


def stalled(session: Session, now: float, quiet_sec: float) -> list[int]:
    """Jobs with archive left to scan whose lease is free and that made no progress for `quiet_sec`:
    their trigger was lost or their worker died (a restart resumes from the committed cursor)."""
    earlier = aliased(Backfill)
    ahead = (
        select(earlier.id)
        .where(earlier.hook_id == Backfill.hook_id, earlier.state.in_(ACTIVE), earlier.id < Backfill.id)
        .exists()
    )
    return list(
        session.scalars(
            select(Backfill.id)
            .where(Backfill.state.in_(ACTIVE), Backfill.lease_until <= now, Backfill.touched_at <= now - quiet_sec)
            .where(~ahead)  # a job queued behind another is started by it, not polled
            .order_by(Backfill.id)
        )
    )
