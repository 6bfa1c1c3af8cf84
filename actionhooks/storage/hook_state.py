"""The one owner of `hook_delivery_state`: what every drain of a hook shares, on every machine.

The rate limit's token bucket, the pause of a dead receiver and the stop after `410 Gone` live in the
database because the database already is the source of truth every worker sees for the batches:
the bucket is read and spent in the same transaction that claims the batches, under the row's lock,
so two workers on two machines can never both spend the same budget, and no second store (Redis is
not always the broker) has to agree with the first. Used by the worker (claim, record), the
scheduler (which hooks to leave alone) and the API (`state`, `paused_since` of GET /hooks/{id}).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from actionhooks.storage.dialect import insert_for
from actionhooks.storage.tables import HookDeliveryState

__all__ = ["HookDeliveryState", "HookStatus", "clear", "held_hooks", "load", "statuses"]

# hold_until of a hook stopped by a 410: nothing is sent until someone starts it again (clear()).
FOREVER = 1e18


@dataclass(frozen=True)
class HookStatus:
    """What the API shows of a hook's delivery state."""

    paused_since: float | None = None
    gone_at: float | None = None


def load(session: Session, hook_id: int, *, lock: bool) -> HookDeliveryState:
    """The hook's state row, created if missing; with `lock`, held (FOR UPDATE) until the transaction ends.

    Callers lock it after the hook row (storage/hooks.lock_existing) and before its batches: the
    claim and the record of outcomes take it in that same order, so they never deadlock.
    """
    if lock:
        session.execute(insert_for(session)(HookDeliveryState).values(hook_id=hook_id).on_conflict_do_nothing())
    stmt = (
        select(HookDeliveryState)
        .where(HookDeliveryState.hook_id == hook_id)
        .execution_options(populate_existing=True)  # a second load in one session reads the row again
    )
    if lock:
        stmt = stmt.with_for_update()  # SQLite compiles no locking clause: one writer at a time
    row = session.scalars(stmt).first()
    if row is None:  # read-only and never written: the defaults, not added to the session
        row = HookDeliveryState(hook_id=hook_id, tokens=0.0, tokens_at=0.0, hold_until=0.0, next_probe_at=0.0)
    return row


def held_hooks(session: Session, now: float) -> set[int]:
    """Hooks whose drain would find nothing it may send before `hold_until` (rate limit, pause, gone)."""
    return set(session.scalars(select(HookDeliveryState.hook_id).where(HookDeliveryState.hold_until > now)))


def statuses(session: Session, hook_ids: Iterable[int]) -> dict[int, HookStatus]:
    ids = list(hook_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(HookDeliveryState.hook_id, HookDeliveryState.paused_since, HookDeliveryState.gone_at).where(
            HookDeliveryState.hook_id.in_(ids)
        )
    ).all()
    return {hook_id: HookStatus(paused, gone) for hook_id, paused, gone in rows}


def clear(session: Session, hook_id: int) -> None:
    """A hook (re)started by its user begins afresh: full bucket, not paused, not gone."""
    session.execute(delete(HookDeliveryState).where(HookDeliveryState.hook_id == hook_id))
