"""The reads behind /healthz and /metrics: the pipeline's progress and the cluster's figures.

A worker that silently stopped consuming leaves every process up and the broker connected; only the
database shows it: intake nobody routes, due batches nobody sends, batch windows nobody cuts. So
`measure` reads the age of the oldest such work and the time of the last successful delivery, with
indexed min/max queries (or counts of tables that stay small). `read_snapshot` reads what every
worker recorded (worker_stats, storage/stats.py) and the hooks by state.

Every read runs on a read-only connection (db.read_only): on SQLite a deferred transaction in WAL
mode, which never takes the write lock nor waits for a writer that holds it, so a polled /healthz
or a scrape never queues behind the router or the group committer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, case, func, not_, select

from actionhooks.storage import stats
from actionhooks.storage.db import read_only
from actionhooks.storage.tables import Attempt, Delivery, Hook, HookDeliveryState, Intake, Outbox, QuarantinedEvent

__all__ = ["ClusterSnapshot", "Liveness", "held_counts", "measure", "read_snapshot"]


@dataclass(frozen=True)
class Liveness:
    """What the engine's progress looks like from the database at `measured_at` (Unix seconds)."""

    measured_at: float
    oldest_queued_age_sec: float  # 0.0 when nothing waits
    last_delivery_at: float | None  # start of the latest successful attempt; None before the first
    pending_batches: int
    failed_batches: int
    intake_events: int
    quarantined_events: int = 0

    def details(self) -> dict[str, Any]:
        """The /healthz `details` object."""
        last = self.last_delivery_at
        return {
            "oldest_queued_age_sec": round(self.oldest_queued_age_sec, 3),
            "last_delivery_at": None if last is None else datetime.fromtimestamp(last, UTC).isoformat(),
            "pending_batches": self.pending_batches,
            "failed_batches": self.failed_batches,
            "intake_events": self.intake_events,
            "quarantined_events": self.quarantined_events,
        }


def _waiting_since(now: float) -> list[Select[Any]]:
    """Since when the oldest work of each kind waits: unrouted intake, due batches, overdue windows.

    A due batch counts whoever holds its lease: a batch claimed by a worker that died waits out the
    lease unsent, and one in flight is still waiting for its receiver; both are work not yet done.
    """
    return [
        select(Intake.created_at).order_by(Intake.id).limit(1),  # ids grow with arrival: the primary key
        select(func.min(Delivery.next_attempt_at)).where(  # ix_deliveries_due
            Delivery.status == "pending", Delivery.next_attempt_at <= now
        ),
        select(func.min(Outbox.due_at)).where(Outbox.due_at <= now),  # indexed; one row per open window
    ]


def measure(engine: Engine, now: float | None = None) -> Liveness:
    """Read the liveness figures; a DBAPIError (OperationalError mostly) when the database cannot answer."""
    now = time.time() if now is None else now
    last_ok = select(Attempt.started_at).where(Attempt.outcome == "ok").order_by(Attempt.id.desc()).limit(1)
    with read_only(engine).connect() as connection:
        since = [t for t in (connection.scalar(stmt) for stmt in _waiting_since(now)) if t is not None]
        last = connection.scalar(last_ok)  # newest first by primary key: stops at the first success
        by_status = dict(connection.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        intake = connection.scalar(select(func.coalesce(func.sum(Intake.n_events), 0)))
        quarantined = connection.scalar(select(func.count()).select_from(QuarantinedEvent))  # small: the unroutable
    return Liveness(
        measured_at=now,
        oldest_queued_age_sec=max((now - t for t in since), default=0.0),
        last_delivery_at=last,
        pending_batches=int(by_status.get("pending", 0)),
        failed_batches=int(by_status.get("failed", 0)),
        intake_events=int(intake or 0),
        quarantined_events=int(quarantined or 0),
    )


@dataclass(frozen=True)
class ClusterSnapshot:
    """Worker totals (stats.totals), hooks by state and held hooks by reason, as read at one scrape."""

    totals: Mapping[stats.Series, float]
    hooks_by_state: Mapping[str, int]
    held: Mapping[str, int] = field(default_factory=dict)


def held_counts(connection: Connection, now: float) -> dict[str, int]:
    """Hooks whose delivery is held, by reason: `gone` (stopped by a 410), `paused` (a dead receiver,
    probed now and then), `rate_limited` (waiting for its rate limit: held, neither paused nor gone)."""
    c = HookDeliveryState.__table__.c
    gone = c.gone_at.isnot(None)
    paused = c.paused_since.isnot(None)
    reasons = {
        "gone": gone,
        "paused": and_(paused, not_(gone)),
        "rate_limited": and_(c.hold_until > now, not_(gone), not_(paused)),
    }
    row = connection.execute(select(*(func.coalesce(func.sum(case((e, 1), else_=0)), 0) for e in reasons.values())))
    return {name: int(n) for name, n in zip(reasons, row.one(), strict=True)}


def read_snapshot(engine: Engine, now: float | None = None) -> ClusterSnapshot:
    """The workers' totals, the hooks by state (active, stopped) and the held hooks by reason."""
    column = Hook.__table__.c.active
    with read_only(engine).connect() as connection:
        totals = stats.totals(connection)
        by_state = {}
        for state, count in connection.execute(select(column, func.count()).group_by(column)):
            by_state["active" if state else "stopped"] = int(count)
        held = held_counts(connection, now or time.time())
    return ClusterSnapshot(totals, by_state, held)
