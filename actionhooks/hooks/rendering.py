"""A hook's events as it delivers them: custom_data rendered from its profile fields and values,
message content attached for include_content hooks.

Shared by routing (worker/route.py), backfill (worker/backfill.py) and test sending
(api/routes/deliveries.py), so an event is shaped the same way whichever path sends it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from actionhooks.errors import TemplateError
from actionhooks.hooks.matching import CompiledHook
from actionhooks.settings import Settings
from actionhooks.storage import content as content_store
from actionhooks.storage.deliveries import new_batch
from actionhooks.storage.lookups import load_catalog, load_profiles
from actionhooks.templating import DictCatalog, RenderBudget, build_custom_data


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
    and stored content they need in bulk."""
    profiles = load_profiles(session, account_id, hooks, matched)
    catalog = DictCatalog(load_catalog(session, account_id, hooks, matched))
    wanted = (event for hook in hooks if hook.include_content for event in matched[hook.id])
    attach = content_store.Attacher(session, account_id, contents, settings, now, wanted=wanted)
    for hook in sorted(hooks, key=lambda h: h.id):
        rendered, broken = render_events(hook, matched[hook.id], profiles, catalog, attach)
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
        profile_fields=hook.profile_fields,
        profile=profiles.get((event.get("list_id"), event.get("profile_id"))) if hook.profile_fields else None,  # type: ignore[arg-type]
        values=hook.values,
        catalog=catalog,
        budget=budget,
    )


def render_events(
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
            delivered = event.copy()  # a C-level copy, then without the content: ~3x a dict comprehension
            delivered.pop("content", None)
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
    broken = new_batch(
        hook.id, hook.account_id, failed, now, status="failed", failed_at=now,
        last_error=f"rendering failed: {errors[0]}",
    )
    return out, broken
