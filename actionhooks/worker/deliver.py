"""Draining a hook: cut ready batches, claim due ones, make one attempt each, record the outcome.

Phases (after outpost):
- claim: in one transaction, the attempt counter is incremented, an attempt row written and a lease
  taken *before* anything is sent, so a worker killed mid-send has used up that attempt and can
  never make a batch retry forever; when the lease passes, the batch is due again.
- attempt: `Transport.send`, outside any transaction, within the attempt's one deadline
  (HOOK_HTTP_TIMEOUT_SEC for everything: connect, TLS, sending, waiting for and reading the answer).
  The drain's batches go out on sending threads of its own, so no batch waits behind another
  drain's: the lease (`Runtime.sends_per_thread` deadlines + LEASE_MARGIN_SEC) outlasts every send of a live
  worker, and no batch is handed to a second worker while the first still sends it.
- record: success deletes the batch; a failure asks the retry policy for the delay, and either
  schedules the next attempt in the database (never as a Celery ETA: long delays would sit in the
  broker and Redis would redeliver them) or moves the batch to the failed list.

Every transaction that writes the hook's batches or attempts first locks the hook row KEY SHARE
(storage/hooks.lock_existing): the same order as DELETE /hooks/{id}, which locks the hook and then
cascades to its rows, so a delete and a drain wait for each other instead of deadlocking. A hook
deleted meanwhile ends the drain; an outcome it can no longer record went with the hook.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.orm import Session

from actionhooks import tracing
from actionhooks.delivery import Batch, Receipt, attempt
from actionhooks.delivery.config import redact
from actionhooks.errors import DeliveryError
from actionhooks.hooks.matching import CompiledHook
from actionhooks.storage import deliveries, stats
from actionhooks.storage.hooks import lock_existing
from actionhooks.storage.intake import stage
from actionhooks.worker import control, shutdown
from actionhooks.worker.batching import form_batches

if TYPE_CHECKING:
    from actionhooks.worker.runtime import Runtime

DRAIN_TIME_BUDGET_SEC = 10.0
# What a lease leaves after the sends' deadlines: recording the round (one transaction).
LEASE_MARGIN_SEC = 5.0
ERROR_TEXT_LIMIT = 2000

log = logging.getLogger(__name__)


@dataclass
class Claimed:
    """A batch claimed for one attempt: what is sent (its stored array as it is, decoded only by a
    transport or an outcome that needs the events); its attempt row is named by the batch's id and
    attempt number."""

    batch: Batch
    accepted_at: float | None = None  # acceptance of the oldest event (the latency histogram)
    trace_context: str | None = None  # the routing span that formed the batch (tracing.py)

    @property
    def delivery_id(self) -> str:
        return self.batch.batch_id

    @property
    def attempt(self) -> int:
        return self.batch.attempt


@dataclass
class Outcome:
    """One attempt's result: a receipt when the batch was delivered, else the error."""

    claimed: Claimed
    receipt: Receipt | None
    error: DeliveryError | None

    def __post_init__(self) -> None:
        if (self.receipt is None) == (self.error is None):
            raise ValueError(f"batch {self.claimed.delivery_id}: an outcome has either a receipt or an error")


def lease_seconds(rt: Runtime, hook: CompiledHook) -> float:
    """How long a claimed batch stays hidden: longer than the attempts one sending thread makes in a
    round (`Runtime.sends_per_thread`, one after the other, each cut at HOOK_HTTP_TIMEOUT_SEC whatever
    the receiver does), plus the time to record them."""
    return rt.settings.HOOK_HTTP_TIMEOUT_SEC * rt.sends_per_thread(hook) + LEASE_MARGIN_SEC


def drain_hook(rt: Runtime, hook_id: int) -> int:
    """Deliver what is due for one hook within a time budget; returns the number of attempts made."""
    rt.count_task("drain")
    rt.hooks.refresh()
    hook = rt.hooks.get(hook_id)
    if hook is None:
        return 0  # deleted (its work went with it) or not compilable (logged by the cache)
    with rt.sessions() as session:
        if not lock_existing(session, [hook_id]):
            return 0  # deleted since the cache saw it: its work went with it
        form_batches(session, hook, [])  # closes a batch window that is due (timed flush)
        session.commit()
    parallel = rt.send_parallelism(hook)
    per_round = parallel * rt.sends_per_thread(hook)
    # This drain's own sending threads (started on first use, ended with the drain): a shared pool
    # would make batches wait in line behind other drains' while their lease runs.
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="actionhooks-send") as senders:
        attempts, done = _drain_rounds(rt, hook, per_round, senders)
    if not done:
        rt.triggers.drain(hook_id)  # budget used up (or stopping): continue in a fresh task
    return attempts


def _drain_rounds(rt: Runtime, hook: CompiledHook, per_round: int, senders: ThreadPoolExecutor) -> tuple[int, bool]:
    """Claim, attempt and record rounds until nothing is due (done) or the budget is used up.

    A round's outcomes are recorded in the transaction that claims the next round's batches: one
    transaction, and one lock of the hook row, per round instead of two. The order inside is the
    record's and then the claim's (hook row, the hook's state, its batches), as in two transactions.
    """
    attempts = 0
    deadline = time.monotonic() + DRAIN_TIME_BUDGET_SEC
    outcomes: list[Outcome] = []
    gate: control.Gate | None = None
    while True:
        more = time.monotonic() < deadline and not shutdown.requested()
        notices: list[dict[str, Any]] = []
        with rt.sessions() as session:
            if not lock_existing(session, [hook.id]):
                return attempts, True  # deleted (maybe while sending): its batches and attempts went with it
            if outcomes:
                record(session, rt, hook, outcomes, gate=gate, notices=notices)
            claimed, gate = claim_round(session, rt, hook, per_round, notices) if more else ([], None)
            raised = _capture(rt, session, hook, notices)
            session.commit()
        _after_commit(rt, hook, raised, gate)
        if not claimed:
            return attempts, more
        outcomes = run_attempts(rt, hook, claimed, senders)
        attempts += len(claimed)


def _capture(rt: Runtime, session: Session, hook: CompiledHook, notices: list[dict[str, Any]]) -> bool:
    """Capture operational events into the account's intake, in the caller's transaction."""
    if not notices:
        return False
    archive = rt.settings.EVENT_ARCHIVE_HOURS > 0
    return stage(session, hook.account_id, orjson.dumps(notices), len(notices), time.time(), archive=archive)


def _after_commit(rt: Runtime, hook: CompiledHook, route: bool, gate: control.Gate | None) -> None:
    if route:
        rt.triggers.route(hook.account_id)
    if gate is not None and gate.wake_in is not None:
        rt.triggers.drain(hook.id, countdown=gate.wake_in)  # beyond MAX_COUNTDOWN_SEC: the scheduler


def claim_due(session: Session, rt: Runtime, hook: CompiledHook, limit: int) -> list[Claimed]:
    """`claim_round` for callers that only want the batches, the hook row locked first."""
    if not lock_existing(session, [hook.id]):
        return []
    return claim_round(session, rt, hook, limit, [])[0]


def claim_round(
    session: Session, rt: Runtime, hook: CompiledHook, limit: int, notices: list[dict[str, Any]]
) -> tuple[list[Claimed], control.Gate | None]:
    """Claim up to `limit` due batches with a fixed number of statements, whatever `limit` is: a
    statement costs about as much as sending a batch of 100 events, so per-batch statements would
    make the bookkeeping dearer than the delivery. The caller holds the hook row's lock
    (lock_existing, which also says the hook still exists). Nothing when the hook is paused between
    probes, stopped as gone, or out of rate budget (worker/control.py: then the gate says when to
    come back)."""
    now = time.time()
    gate = control.admit(session, rt.settings, hook, now)
    if gate.closed:
        return [], gate
    if gate.max_batches is not None:
        limit = min(limit, gate.max_batches)
    rows = deliveries.due(session, hook.id, now, limit)
    if gate.max_batches == 1 and not rows:  # a paused hook with nothing to probe with: probe when there is
        gate.state.next_probe_at = gate.state.hold_until = now
        gate.wake_in = None
    rows = rows[: control.take(gate, hook, [row.n_events for row in rows], now)]
    if not rows:
        return [], gate
    retried = [row.id for row in rows if row.attempts > 0]
    if retried and (lost := deliveries.close_lost_attempts(session, retried)):
        tally = stats.Tally()
        tally.attempt(hook.delivery.type, "lost", lost)
        stats.add(session, tally)
    due: list[tuple[Batch, float | None, str | None]] = []
    for delivery_id, attempts, blob, accepted_at, trace_context, n_events in rows:
        if attempts >= rt.policy.max_attempts:
            _fail(session, hook, delivery_id, orjson.loads(blob),
                  f"worker lost during attempt {attempts} (the last allowed)", now=now, notices=notices)
        else:
            batch = Batch(hook.id, delivery_id, attempts + 1, body=blob, n_events=n_events)
            due.append((batch, accepted_at, trace_context))
    if not due:
        return [], gate
    deliveries.start_attempts(
        session, hook.id, [(b.batch_id, b.attempt, b.n_events) for b, _, _ in due], now,
        lease_until=now + lease_seconds(rt, hook),
    )
    return [Claimed(batch, accepted_at, trace_context) for batch, accepted_at, trace_context in due], gate


def run_attempts(
    rt: Runtime, hook: CompiledHook, claimed: list[Claimed], senders: ThreadPoolExecutor
) -> list[Outcome]:
    """One attempt per claimed batch on `senders`; the hook's transport stays open until all ended."""
    with rt.transports.using(hook) as transport:

        def one(c: Claimed) -> Outcome:
            with tracing.span("actionhooks.deliver", links=[c.trace_context], hook_id=hook.id,
                              batch_id=c.delivery_id, attempt=c.attempt, transport=hook.delivery.type,
                              events=c.batch.n_events) as span:
                try:
                    return Outcome(c, attempt(transport, c.batch), None)
                except DeliveryError as exc:
                    span.fail(f"{type(exc).__name__}: {exc.message}")
                    return Outcome(c, None, exc)

        if len(claimed) == 1:
            return [one(claimed[0])]
        return list(senders.map(one, claimed))


def record(
    session: Session,
    rt: Runtime,
    hook: CompiledHook,
    outcomes: list[Outcome],
    *,
    gate: control.Gate | None = None,
    notices: list[dict[str, Any]] | None = None,
) -> None:
    """Record the outcomes of one round; successes (the common case) in two statements for all, and the
    round's totals for /metrics in one more (storage/stats.py).

    The hook's pause/gone state is settled first (worker/control.py, its row locked before the
    batches, the claim's order): a failure of a paused or gone hook is handed back, not counted."""
    notices = [] if notices is None else notices
    now = time.time()
    tally = stats.Tally()
    transport = hook.delivery.type
    for o in outcomes:
        tally.attempt(transport, "ok" if o.error is None else "error")
        if o.error is None:
            latency = None if o.claimed.accepted_at is None else now - o.claimed.accepted_at
            tally.delivered(transport, o.claimed.batch.n_events, latency)
    stats.add(session, tally)
    # Outcome guarantees a receipt exactly when there is no error.
    delivered = [(o.claimed, o.receipt) for o in outcomes if o.receipt is not None]
    errors = [o.error for o in outcomes if o.error is not None]
    verdict = control.after_round(session, rt.settings, hook, gate, errors=errors, delivered=bool(delivered), now=now)
    notices.extend(verdict.notices)
    if delivered:
        deliveries.remove(session, [c.delivery_id for c, _ in delivered])
        finished = []
        each = log.isEnabledFor(logging.DEBUG)
        for c, receipt in delivered:
            if each:
                log.debug("delivered: hook %s batch %s attempt %d, %d events, status %s, %.0f ms", hook.id,
                          c.delivery_id, c.attempt, c.batch.n_events, receipt.status_code, receipt.latency_ms)
            finished.append({"d_id": c.delivery_id, "d_attempt": c.attempt, "outcome": "ok",
                             "status_code": receipt.status_code, "error": None, "latency_ms": receipt.latency_ms})
        deliveries.finish_attempts(session, finished)
        # One line per round, not per batch: with one event per batch a line per batch cost ~5% of the
        # worker's CPU. Each batch's attempt is in the attempts log (GET /hooks/{id}/attempts).
        log.info("delivered: hook %s, %d batch(es), %d events, slowest %.0f ms", hook.id, len(delivered),
                 sum(c.batch.n_events for c, _ in delivered), max(r.latency_ms for _, r in delivered))
    for outcome in outcomes:
        if outcome.error is not None:
            _record_failure(session, rt, hook, outcome.claimed, outcome.error, held=verdict.held, notices=notices)


def _record_failure(
    session: Session,
    rt: Runtime,
    hook: CompiledHook,
    c: Claimed,
    err: DeliveryError,
    *,
    held: bool,
    notices: list[dict[str, Any]],
) -> None:
    now = time.time()
    message = redact(f"{type(err).__name__}: {err.message}")[:ERROR_TEXT_LIMIT]
    log.warning("delivery failed: hook %s batch %s attempt %d: %s", hook.id, c.delivery_id, c.attempt, message)
    deliveries.finish_attempts(session, [{"d_id": c.delivery_id, "d_attempt": c.attempt, "outcome": "error",
                                          "status_code": err.status_code, "error": message, "latency_ms": None}])
    events = c.batch.events  # decoded by now unless the transport sent the stored array as it is
    remaining = [e for i, e in enumerate(events) if i not in err.delivered]
    if not remaining:  # the error came after every event was through (e.g. a close): nothing to resend
        deliveries.remove(session, [c.delivery_id])
        return
    left = remaining if len(remaining) != len(events) else None
    if held:  # paused (or gone): the attempt does not count and the batch waits for the probe
        deliveries.retry_later(session, c.delivery_id, next_attempt_at=now, error=message, status_code=err.status_code,
                               remaining=left, attempts=c.attempt - 1)
        return
    delay = rt.policy.next_delay(c.attempt, err, random.random())
    if delay is None:
        _fail(session, hook, c.delivery_id, remaining, message, now=now, status=err.status_code, remaining=left,
              notices=notices)
        return
    deliveries.retry_later(session, c.delivery_id, next_attempt_at=now + delay, error=message,
                           status_code=err.status_code, remaining=left)


def _fail(
    session: Session,
    hook: CompiledHook,
    delivery_id: str,
    events: list[dict[str, Any]],
    message: str,
    *,
    now: float,
    notices: list[dict[str, Any]],
    status: int | None = None,
    remaining: list[dict[str, Any]] | None = None,
) -> None:
    """Move a batch to the failed list (with `remaining`, the events still unsent, when the receiver
    took some), and capture a batch_failed event about it."""
    deliveries.fail(session, delivery_id, now=now, error=message, status_code=status, remaining=remaining)
    notice = control.batch_failed(hook, delivery_id, events, message, now)
    if notice is not None:
        notices.append(notice)
