"""Quarantined events: what routing could not process, set aside so the account's other events flow on.

The router puts an event here when routing it fails on its own, every time (a value the database
refuses, a row a trigger rejects, a bug our code hits only for that event: worker/route.py bisects a
failing chunk down to it). It keeps the event as accepted and the error; an admin lists the
account's quarantine and replays events into the intake once the cause is fixed. A replayed event
is routed like any other, with the time it was first accepted (hooks stopped or created since
capture what they would have then); if it fails again it comes back here. Kept for
QUARANTINE_KEEP_HOURS, then deleted (`expire`), so a forgotten quarantine does not grow forever.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from actionhooks.storage import intake
from actionhooks.storage.tables import QuarantinedEvent

__all__ = ["ERROR_TEXT_LIMIT", "count", "expire", "listed", "quarantine", "replay"]

ERROR_TEXT_LIMIT = 2000
EXPIRE_CHUNK = 1000


def quarantine(session: Session, account_id: int, event: dict[str, Any], accepted_at: float, error: str) -> None:
    """Set `event` aside with `error` (in the caller's transaction, which also removes it from the intake).

    The texts are made storable whatever the event held (the event itself is kept as bytes): a
    quarantine that failed to store would block the account again.
    """
    session.execute(
        insert(QuarantinedEvent).values(
            account_id=account_id,
            event_id=_storable(str(event.get("event_id", "")))[:100],
            event=orjson.dumps(event),
            accepted_at=accepted_at,
            quarantined_at=time.time(),
            error=_storable(error)[:ERROR_TEXT_LIMIT],
        )
    )


def _storable(text: str) -> str:
    """`text` without the NUL characters PostgreSQL text refuses (shown as \\0)."""
    return text.replace("\x00", "\\0")


def listed(session: Session, account_id: int, limit: int) -> list[QuarantinedEvent]:
    """The account's quarantined events, oldest first."""
    stmt = select(QuarantinedEvent).where(QuarantinedEvent.account_id == account_id)
    return list(session.scalars(stmt.order_by(QuarantinedEvent.id).limit(limit)))


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(QuarantinedEvent)) or 0)


def replay(session: Session, account_id: int, ids: list[int] | None) -> int:
    """Move the account's quarantined events (all, or `ids`) back into the intake; returns how many.

    One intake row per event, with its original acceptance time. The caller commits and triggers a router.
    """
    stmt = select(QuarantinedEvent.id, QuarantinedEvent.event, QuarantinedEvent.accepted_at).where(
        QuarantinedEvent.account_id == account_id
    )
    if ids is not None:
        stmt = stmt.where(QuarantinedEvent.id.in_(ids))
    # Two admins replaying at once: each event once (SQLite compiles no locking clause: one writer at a time).
    stmt = stmt.with_for_update(skip_locked=True)
    rows = session.execute(stmt.order_by(QuarantinedEvent.id)).all()
    if not rows:
        return 0
    intake.requeue(session, account_id, [(blob, accepted_at) for _, blob, accepted_at in rows])
    session.execute(delete(QuarantinedEvent).where(QuarantinedEvent.id.in_([row_id for row_id, _, _ in rows])))
    return len(rows)


def expire(session: Session, cutoff: float, chunk: int = EXPIRE_CHUNK) -> bool:
    """Delete up to `chunk` events quarantined before `cutoff` and commit; whether none such is left."""
    old = select(QuarantinedEvent.id).where(QuarantinedEvent.quarantined_at < cutoff).limit(chunk)
    ids = list(session.scalars(old))
    if ids:
        session.execute(delete(QuarantinedEvent).where(QuarantinedEvent.id.in_(ids)))
        session.commit()
    return len(ids) < chunk
