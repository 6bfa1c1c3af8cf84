"""Read-only figures over the delivery tables for the console: per-hook counters and per-minute activity.

Every query is scoped by account (hooks.account_id) and bounded: counters are aggregates, the chart
groups the last hour into 60 minute buckets in SQL, so neither grows with traffic in Python.
"Delivered" counts the events of successful attempts, "failed" the events of failed attempts (a
batch that is retried shows up once per failed attempt: the chart shows what receivers answered).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import Integer, and_, case, cast, func, select
from sqlalchemy.orm import Session

from actionhooks.storage.dialect import is_postgresql
from actionhooks.storage.tables import Attempt, Delivery, Hook

__all__ = ["WINDOW_MINUTES", "Activity", "HookFigures", "activity", "hook_figures"]

WINDOW_MINUTES = 60


@dataclass(frozen=True)
class HookFigures:
    """What the hooks list shows per hook."""

    delivered_last_hour: int = 0
    pending_batches: int = 0
    failed_batches: int = 0
    last_success: float | None = None


@dataclass(frozen=True)
class Activity:
    """Events delivered and failed per minute, oldest minute first; `start` is the first minute's Unix time."""

    start: float
    delivered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def hook_figures(
    session: Session, account_id: int, hook_id: int | None = None, now: float | None = None
) -> dict[int, HookFigures]:
    """HookFigures of each of the account's hooks (or of `hook_id` only) that has any; others get the default."""
    since = (now or time.time()) - WINDOW_MINUTES * 60
    hooks = select(Hook.id).where(Hook.account_id == account_id)
    mine = (hooks.where(Hook.id == hook_id) if hook_id is not None else hooks).scalar_subquery()
    delivered = dict(
        session.execute(
            select(Attempt.hook_id, func.sum(Attempt.n_events))
            .where(Attempt.hook_id.in_(mine), Attempt.outcome == "ok", Attempt.started_at >= since)
            .group_by(Attempt.hook_id)
        ).all()
    )
    last_ok = dict(
        session.execute(
            select(Attempt.hook_id, func.max(Attempt.started_at))
            .where(Attempt.hook_id.in_(mine), Attempt.outcome == "ok")
            .group_by(Attempt.hook_id)
        ).all()
    )
    batches: dict[int, dict[str, int]] = {}
    for owner, status, count in session.execute(
        select(Delivery.hook_id, Delivery.status, func.count())
        .where(Delivery.account_id == account_id, Delivery.hook_id.in_(mine))
        .group_by(Delivery.hook_id, Delivery.status)
    ):
        batches.setdefault(owner, {})[status] = count
    out = {}
    for owner in set(delivered) | set(last_ok) | set(batches):
        counts = batches.get(owner, {})
        out[owner] = HookFigures(
            delivered_last_hour=int(delivered.get(owner) or 0),
            pending_batches=counts.get("pending", 0),
            failed_batches=counts.get("failed", 0),
            last_success=last_ok.get(owner),
        )
    return out


def activity(session: Session, account_id: int, hook_id: int | None = None, now: float | None = None) -> Activity:
    """Per-minute delivered/failed events over the last hour, for the account or one of its hooks."""
    end = int((now or time.time()) // 60 + 1) * 60  # the end of the current minute
    start = end - WINDOW_MINUTES * 60
    offset = (Attempt.started_at - start) / 60
    # floor() for PostgreSQL (its integer cast rounds); SQLite's integer cast truncates, which is floor here.
    minute = func.floor(offset) if is_postgresql(session) else cast(offset, Integer)
    scope = Attempt.hook_id.in_(select(Hook.id).where(Hook.account_id == account_id).scalar_subquery())
    if hook_id is not None:
        scope = and_(scope, Attempt.hook_id == hook_id)
    rows = session.execute(
        select(
            minute.label("minute"),
            func.sum(case((Attempt.outcome == "ok", Attempt.n_events), else_=0)),
            func.sum(case((Attempt.outcome == "error", Attempt.n_events), else_=0)),
        )
        .where(scope, Attempt.started_at >= start, Attempt.started_at < end)
        .group_by("minute")
    ).all()
    delivered, failed = [0] * WINDOW_MINUTES, [0] * WINDOW_MINUTES
    for bucket, ok, bad in rows:
        index = int(bucket)
        if 0 <= index < WINDOW_MINUTES:
            delivered[index] += int(ok or 0)
            failed[index] += int(bad or 0)
    return Activity(start=float(start), delivered=delivered, failed=failed)
