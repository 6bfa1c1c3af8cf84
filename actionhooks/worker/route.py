"""Routing: intake rows -> matched, rendered events in each hook's batches.

One task handles thousands of events: it claims up to ROUTE_CHUNK_EVENTS of an account's intake
at a time, matches each event against the compiled hook index, loads the profiles, catalog names
and stored content the matched hooks need in a few bulk queries, renders custom_data, and cuts
batches — all in one transaction with the removal of the intake rows, so a crash at any point
either routes a request completely or leaves it for the next router.

One event never blocks the others. A chunk is routed inside a savepoint; when that fails with an
error that belongs to the data (the database refusing a value or a row, a bug our code hits only
for some event: POISON), the chunk is bisected, each half in its own savepoint, down to the events
that fail on their own. Those are quarantined with their error (storage/quarantine.py: listed by
GET /quarantine, counted in /metrics, replayable) in the same transaction that routes the rest and
removes the chunk from the intake. A failing database (disk full, lost connection, lock timeout) is
not the event's fault: it fails the task, and the chunk stays for the next try.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from actionhooks import tracing
from actionhooks.errors import TemplateError
from actionhooks.hooks.matching import CompiledHook
from actionhooks.settings import Settings
from actionhooks.storage import intake, quarantine
from actionhooks.storage.hooks import lock_existing
from actionhooks.storage.tables import Delivery, Intake
from actionhooks.templating import DictCatalog, RenderBudget, build_custom_data
from actionhooks.worker import content as content_store
from actionhooks.worker import shutdown
from actionhooks.worker.batching import form_batches, new_delivery
from actionhooks.worker.lookups import load_catalog, load_profiles

if TYPE_CHECKING:
    from actionhooks.worker.runtime import Runtime

log = logging.getLogger(__name__)

ROUTE_CHUNK_EVENTS = 5000
ROUTE_CLAIM_ROWS = 1000
ROUTE_TIME_BUDGET_SEC = 10.0
# Errors that follow an event wherever it is routed: what the database refuses for its values or rows
# (DataError: too long, NUL, out of range; IntegrityError: a constraint or a trigger), and what our code
# raises only for some input. OperationalError, InterfaceError, InternalError are the database's state.
POISON: tuple[type[Exception], ...] = (
    DataError, IntegrityError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
)

Accepted = list[tuple[float, dict[str, Any]]]


def route_account(rt: Runtime, account_id: int) -> int:
    """Route the account's waiting intake; returns the number of events routed."""
    with rt.sessions() as session:
        intake.clear_signal(session, account_id)
    routed = 0
    deadline = time.monotonic() + ROUTE_TIME_BUDGET_SEC
    while time.monotonic() < deadline and not shutdown.requested():
        with rt.sessions() as session:
            ids, events, traces, more = _claim(session, account_id)
            if not ids:
                return routed
            # After the claim: every hook change committed before these events were accepted is seen.
            rt.hooks.refresh(force=True)  # reads only: never waits for the write lock this session holds
            with tracing.span("actionhooks.route", links=traces, account_id=account_id, events=len(events)):
                windows = _route_isolating(rt, session, account_id, events)
                intake.remove(session, ids)
                session.commit()
        for hook_id, due_in in windows.items():
            rt.triggers.drain(hook_id, countdown=due_in or None)
        routed += len(events)
        if not more:
            # All that waited is routed. What arrived meanwhile raised the route signal (cleared
            # above) and sent its own trigger, which queues behind the drains this chunk triggered:
            # a router that looped on would hold its worker process while they wait (prefetch 1).
            return routed
    rt.triggers.route(account_id)  # budget used up with work left: continue in a fresh task
    return routed


def _claim(session: Session, account_id: int) -> tuple[list[int], Accepted, list[str | None], bool]:
    """Up to ROUTE_CHUNK_EVENTS events of the oldest intake rows, each with the time it was accepted,
    the rows' trace contexts (tracing.py: the route span links to their accept spans), and whether
    rows were left waiting.

    Two steps, so only the blobs of the chosen rows are ever read: the first row counts pick the
    rows that fit (reading 1,000 blobs of 1,000 events each would hold ~300 MB in the worker), the
    second locks and reads just those (rows another router holds are skipped).
    """
    sizes = session.execute(
        select(Intake.id, Intake.n_events).where(Intake.account_id == account_id).order_by(Intake.id)
        .limit(ROUTE_CLAIM_ROWS)
    ).all()
    chosen: list[int] = []
    total = 0
    for row_id, n in sizes:
        if chosen and total + n > ROUTE_CHUNK_EVENTS:
            break
        chosen.append(row_id)
        total += n
    if not chosen:
        return [], [], [], False
    stmt = (
        select(Intake.id, Intake.events, Intake.created_at, Intake.trace_context)
        .where(Intake.id.in_(chosen))
        .order_by(Intake.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids: list[int] = []
    events: Accepted = []
    traces: list[str | None] = []
    for row_id, blob, accepted_at, trace_context in session.execute(stmt):
        ids.append(row_id)
        traces.append(trace_context)
        events.extend((accepted_at, event) for event in orjson.loads(blob))
    return ids, events, traces, len(chosen) < len(sizes) or len(sizes) == ROUTE_CLAIM_ROWS


def _route_isolating(rt: Runtime, session: Session, account_id: int, accepted: Accepted) -> dict[int, float]:
    """Route `accepted`, quarantining the events that fail on their own (see the module docstring).

    Returns {hook_id: seconds until its batch window closes} to trigger. A chunk with one poison
    event costs about 2·log2(n) extra partial routings, each of at most half the previous part.
    """
    windows: dict[int, float] = {}
    parts = [accepted]
    while parts:
        part = parts.pop()
        try:
            with session.begin_nested():
                routed = _route_events(rt, session, account_id, part)
        except POISON as exc:
            if len(part) > 1:
                middle = len(part) // 2
                parts += [part[middle:], part[:middle]]  # the first half next: events keep their order
                continue
            accepted_at, event = part[0]
            error = _describe(exc)
            log.warning("account %s: event %s quarantined, routing it failed: %s",
                        account_id, event.get("event_id"), error.splitlines()[0])
            quarantine.quarantine(session, account_id, event, accepted_at, error)
            continue
        for hook_id, due_in in routed.items():
            windows[hook_id] = min(due_in, windows.get(hook_id, due_in))
    return windows


def _describe(exc: Exception) -> str:
    """The error as its admin reads it: the database's own message, not our SQL and its parameters."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(cause).__name__}: {cause}".strip()


def _route_events(rt: Runtime, session: Session, account_id: int, accepted: Accepted) -> dict[int, float]:
    """Match, render and batch events; returns {hook_id: seconds until its batch window closes} to trigger."""
    now = time.time()
    contents = content_store.remember(session, account_id, [event for _, event in accepted], now)
    matched: dict[int, list[dict[str, Any]]] = defaultdict(list)
    first_accepted: dict[int, float] = {}
    for accepted_at, event in accepted:
        for hook in rt.hooks.capturing(event, accepted_at):
            matched[hook.id].append(event)
            first_accepted[hook.id] = min(accepted_at, first_accepted.get(hook.id, accepted_at))
    if not matched:
        return {}
    # A hook deleted since the cache saw it loses its share (the rest is routed); one that exists is
    # kept from being deleted until this transaction ends (lock_existing: the pipeline's lock order).
    alive = lock_existing(session, matched)
    hooks = [h for h in (rt.hooks.get(hook_id) for hook_id in matched) if h is not None and h.id in alive]
    to_trigger: dict[int, float] = {}
    for hook, rendered, broken in render_matched(
        session, rt.settings, account_id, hooks, matched, contents=contents, now=now
    ):
        if broken:
            session.execute(insert(Delivery), [broken])
        formed = form_batches(session, hook, rendered, now, accepted_at=first_accepted[hook.id],
                              trace_context=tracing.current())
        if formed.batches:
            to_trigger[hook.id] = 0.0
        elif formed.window_opened and formed.window_due_in is not None:
            to_trigger[hook.id] = formed.window_due_in
    return to_trigger


def render_matched(
    session: Session,
    settings: Settings,
    account_id: int,
    hooks: list[CompiledHook],
    matched: dict[int, list[dict[str, Any]]],
    *,
    contents: dict[str, dict[str, Any]],
    now: float,
) -> Iterator[tuple[CompiledHook, list[dict[str, Any]], dict[str, Any] | None]]:
    """Each hook's matched events as it delivers them, and the failed batch of those whose templates
    failed, in hook id order (a fixed lock order across routers). Loads the profiles, catalog names
    and stored content they need in bulk. Shared by routing and backfill (worker/backfill.py)."""
    profiles = load_profiles(session, account_id, hooks, matched)
    catalog = DictCatalog(load_catalog(session, account_id, hooks, matched))
    wanted = (event for hook in hooks if hook.include_content for event in matched[hook.id])
    attach = content_store.Attacher(session, account_id, contents, settings, now, wanted=wanted)
    for hook in sorted(hooks, key=lambda h: h.id):
        rendered, broken = _render(hook, matched[hook.id], profiles, catalog, attach)
        yield hook, rendered, broken


def custom_data_for(
    hook: CompiledHook,
    event: dict[str, Any],
    profiles: dict[tuple[int, str], dict[str, Any]],
    catalog: DictCatalog,
    budget: RenderBudget | None = None,
) -> dict[str, Any]:
    """The custom_data `hook` delivers with `event` (its profile fields, then the event's own custom_data or
    the hook's rendered values); raises TemplateError. Shared by routing and test sending."""
    return build_custom_data(
        event,
        profile_fields=list(hook.profile_fields),
        profile=profiles.get((event.get("list_id"), event.get("profile_id"))),  # type: ignore[arg-type]
        values=hook.values,
        catalog=catalog,
        budget=budget,
    )


def _render(
    hook: CompiledHook,
    events: list[dict[str, Any]],
    profiles: dict[tuple[int, str], dict[str, Any]],
    catalog: DictCatalog,
    attach: content_store.Attacher,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Each event as this hook delivers it; events whose templates fail go to one failed batch, not retried."""
    shaped_custom_data = bool(hook.profile_fields or hook.values)
    changes_events = shaped_custom_data or hook.include_content
    out: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    errors: list[str] = []
    budget = hook.values.batch_budget()  # TEMPLATE_MAX_BATCH_CHARS for this pass of this hook
    for event in events:
        # A copy only when this hook changes the event: otherwise it is delivered as captured and
        # hooks share the dict (nothing mutates it after routing; it is serialised into a batch).
        if changes_events or "content" in event:
            delivered = {k: v for k, v in event.items() if k != "content"}
        else:
            delivered = event
        if shaped_custom_data:
            try:
                delivered["custom_data"] = custom_data_for(hook, event, profiles, catalog, budget)
            except TemplateError as exc:
                failed.append(delivered)
                errors.append(str(exc))
                continue
        if hook.include_content:
            attach(delivered, event.get("content"))
        out.append(delivered)
    if not failed:
        return out, None
    now = time.time()
    broken = new_delivery(
        hook, failed, now, status="failed", failed_at=now, last_error=f"rendering failed: {errors[0]}"
    )
    return out, broken
