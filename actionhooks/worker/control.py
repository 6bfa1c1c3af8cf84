"""Delivery control of one hook: its rate limit, the pause of a dead receiver, the stop on 410 Gone.

All of it is one row per hook (storage/hook_state.py) that the drains of every worker share, read
and written in the transactions that claim batches and record their outcomes, under the row's lock.

- Rate limit: a token bucket RATE_BURST_SEC of the rate deep (delivery/config.py). A claim takes
  the due batches the bucket pays for; when it cannot pay for the next one it sets `hold_until` to
  the moment it can and the drain asks for a wake-up then (a Celery countdown, or the scheduler,
  which leaves held hooks alone until then) and returns: waiting work stays in the database, the
  worker goes on with other hooks. Only the drain that set `hold_until` asks for the wake-up, so a
  busy hook has one wake-up in flight, not one per trigger.
- Pause: `failing_since` is the first failure after the last success. A failure recorded
  HOOK_PAUSE_AFTER_SEC after it pauses the hook: from then on no batch goes to the failed list (a
  failed attempt is handed back, not counted), and one claim every HOOK_PROBE_EVERY_SEC takes a
  single batch as the probe. The first success resumes the hook, and the drain goes on with all
  that waited.
- Gone: an HTTP 410 stops the hook (storage/hooks.stop) at once; its waiting batches stay pending
  (not failed) until a user starts it again, which clears this row.

Each change of state is captured as an operational event into the account's intake (hook_paused,
hook_resumed, hook_stopped_gone; batch_failed comes from worker/deliver.py) in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from actionhooks.errors import DeliveryError
from actionhooks.events import OPERATIONAL_EVENTS, operational_event
from actionhooks.hooks.matching import CompiledHook
from actionhooks.settings import Settings
from actionhooks.storage import hook_state
from actionhooks.storage.hooks import stop as stop_hook
from actionhooks.storage.tables import HookDeliveryState

GONE_STATUS = 410


@dataclass
class Gate:
    """What one claim may take: `closed` (nothing now), else at most `max_batches`, paid from `tokens`."""

    state: HookDeliveryState
    closed: bool = False
    max_batches: int | None = None
    tokens: float | None = None  # None: no rate limit
    wake_in: float | None = None  # this drain set hold_until: it asks for the wake-up after committing
    locked: bool = False


def admit(session: Session, settings: Settings, hook: CompiledHook, now: float) -> Gate:
    """Read (and for a limited or probing hook, lock) the hook's state: may this claim take anything?"""
    limit = hook.delivery.rate_limit
    state = hook_state.load(session, hook.id, lock=limit is not None)
    gate = Gate(state=state, locked=limit is not None)
    if state.gone_at is not None:
        gate.closed = True
        return gate
    if state.paused_since is not None:
        if now < state.next_probe_at:
            gate.closed = True
            return gate
        if not gate.locked:  # someone else may be taking this probe: decide under the lock
            gate.state = state = hook_state.load(session, hook.id, lock=True)
            gate.locked = True
            if state.paused_since is not None and now < state.next_probe_at:
                gate.closed = True
                return gate
        if state.paused_since is not None:
            state.next_probe_at = state.hold_until = now + settings.HOOK_PROBE_EVERY_SEC
            gate.max_batches = 1
            gate.wake_in = settings.HOOK_PROBE_EVERY_SEC
    if limit is not None:
        if state.hold_until > now and gate.max_batches is None:
            gate.closed = True  # out of budget: the drain that found out asked for the wake-up
            return gate
        full = limit.burst
        refill = (now - state.tokens_at) * limit.per_sec if state.tokens_at else full
        gate.tokens = min(full, state.tokens + refill)
    return gate


def take(gate: Gate, hook: CompiledHook, sizes: list[int], now: float) -> int:
    """How many of the due batches (their event counts, oldest first) the bucket pays for; spends it."""
    limit = hook.delivery.rate_limit
    if limit is None or gate.tokens is None:
        return len(sizes)
    tokens, taken = gate.tokens, 0
    for n_events in sizes:
        cost = limit.cost(n_events)
        # A batch larger than the bucket (cut before the limit was set) goes alone, on a full bucket,
        # and leaves the bucket in debt: the rate still holds over time.
        if cost <= tokens + 1e-9 or (taken == 0 and tokens >= limit.burst - 1e-9) or gate.max_batches == 1:
            tokens -= cost
            taken += 1
        else:
            break
    gate.state.tokens, gate.state.tokens_at = tokens, now
    if taken < len(sizes):  # more is due than the bucket holds: come back when it does
        need = min(limit.cost(sizes[taken]), limit.burst)
        wait = max(0.001, (need - tokens) / limit.per_sec)
        gate.state.hold_until = now + wait
        gate.wake_in = wait if gate.wake_in is None else min(gate.wake_in, wait)
    return taken


@dataclass
class Verdict:
    """What the round's outcomes did to the hook: `held` (paused or gone: failures are handed back)."""

    held: bool = False
    notices: list[dict[str, Any]] = field(default_factory=list)


def after_round(
    session: Session, settings: Settings, hook: CompiledHook, gate: Gate | None, *, errors: list[DeliveryError],
    delivered: bool, now: float,
) -> Verdict:
    """Update pause/gone state after a round of attempts; only touches the row when something changes."""
    snapshot = gate.state if gate is not None else None
    clean = snapshot is None or (snapshot.failing_since is None and snapshot.paused_since is None)
    if not errors and (not delivered or clean):
        return Verdict()
    state = hook_state.load(session, hook.id, lock=True)
    verdict = Verdict()
    gone = next((e for e in errors if e.status_code == GONE_STATUS and hook.delivery.type == "http"), None)
    if gone is not None:
        if state.gone_at is None:
            state.gone_at, state.hold_until = now, hook_state.FOREVER
            stop_hook(session, hook.id)
            verdict.notices.append(_notice("hook_stopped_gone", hook, gone, now))
        verdict.held = True
        return verdict
    if delivered:
        state.failing_since = None
        if state.paused_since is not None:
            verdict.notices.append(_notice("hook_resumed", hook, None, now, paused_since=state.paused_since))
            state.paused_since, state.hold_until, state.next_probe_at = None, 0.0, 0.0
        return verdict
    if state.failing_since is None:
        state.failing_since = now
    pause_after = settings.HOOK_PAUSE_AFTER_SEC
    if state.paused_since is None and pause_after > 0 and now - state.failing_since >= pause_after:
        state.paused_since = now
        state.next_probe_at = state.hold_until = now + settings.HOOK_PROBE_EVERY_SEC
        verdict.notices.append(
            _notice("hook_paused", hook, errors[-1], now, failing_since=state.failing_since)
        )
    verdict.held = state.paused_since is not None or state.gone_at is not None
    return verdict


def batch_failed(hook: CompiledHook, batch_id: str, events: list[dict[str, Any]], error: str, now: float
                 ) -> dict[str, Any] | None:
    """The batch_failed event of a batch that reached the failed list; none for a batch made only of
    operational events, so two hooks relaying each other's failures cannot feed each other forever."""
    if all(e.get("event_type") in OPERATIONAL_EVENTS for e in events):
        return None
    return operational_event(
        "batch_failed", account_id=hook.account_id, hook_id=hook.id, hook_name=hook.name, error=error, now=now,
        batch_id=batch_id, n_events=len(events),
    )


def _notice(kind: str, hook: CompiledHook, error: DeliveryError | None, now: float, **details: Any) -> dict[str, Any]:
    message = f"{type(error).__name__}: {error.message}"[:2000] if error is not None else None
    if error is not None:
        details["status_code"] = error.status_code
    return operational_event(
        kind, account_id=hook.account_id, hook_id=hook.id, hook_name=hook.name, error=message, now=now, **details
    )
