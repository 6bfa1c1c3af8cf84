"""Bulk reads of what matched hooks need to render: profiles and catalog names (a few queries per chunk)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from actionhooks.hooks.matching import CompiledHook
from actionhooks.storage.tables import CatalogEntry, Profile

# catalog kind -> where an event names its id
CATALOG_SOURCES: dict[str, tuple[str, ...]] = {
    "databases": ("list_id",),
    "campaigns": ("event_data", "campaign_id"),
    "messages": ("event_data", "message_id"),
    "segments": ("event_data", "segment_id"),
    "resources": ("event_data", "resource_id"),
    "pixels": ("event_data", "pixel_id"),
}


def _field(event: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = event
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def load_profiles(
    session: Session, account_id: int, hooks: Iterable[CompiledHook], matched: dict[int, list[dict[str, Any]]]
) -> dict[tuple[int, str], dict[str, Any]]:
    """Fields of every profile some matched hook copies from, keyed by (list_id, profile_id)."""
    keys = {
        (e["list_id"], e["profile_id"])
        for h in hooks
        if h.profile_fields
        for e in matched[h.id]
        if isinstance(e.get("list_id"), int) and isinstance(e.get("profile_id"), str)
    }
    found: dict[tuple[int, str], dict[str, Any]] = {}
    items = sorted(keys)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        stmt = select(Profile.list_id, Profile.profile_id, Profile.fields).where(
            Profile.account_id == account_id, tuple_(Profile.list_id, Profile.profile_id).in_(chunk)
        )
        for list_id, profile_id, fields in session.execute(stmt):
            found[(list_id, profile_id)] = fields
    return found


def load_catalog(
    session: Session, account_id: int, hooks: Iterable[CompiledHook], matched: dict[int, list[dict[str, Any]]]
) -> dict[tuple[str, int], dict[str, Any]]:
    """Catalog entries named by events of hooks that render values, keyed by (kind, id)."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for hook in hooks:
        if not hook.values:
            continue
        for event in matched[hook.id]:
            for kind, path in CATALOG_SOURCES.items():
                ident = _field(event, path)
                if isinstance(ident, int) and not isinstance(ident, bool):
                    wanted[kind].add(ident)
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for kind, idents in wanted.items():
        stmt = select(CatalogEntry).where(
            CatalogEntry.account_id == account_id, CatalogEntry.kind == kind, CatalogEntry.id.in_(sorted(idents))
        )
        for entry in session.scalars(stmt):
            found[(kind, entry.id)] = {"name": entry.name, "subid": entry.subid, "subject": entry.subject}
    return found
