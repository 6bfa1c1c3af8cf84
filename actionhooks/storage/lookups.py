"""What matched hooks need to render, gathered per chunk: which profiles and catalog names to load.

The queries themselves are storage's (catalog_for, profiles_for); this module only decides what a
chunk of matched events needs, so hooks without profile fields or values cost no look-up at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from actionhooks.events import ID_PATHS
from actionhooks.hooks.matching import CompiledHook
from actionhooks.storage.catalog import catalog_for
from actionhooks.storage.profiles import profiles_for
from actionhooks.templating import CatalogEntry

# catalog kind -> where an event names its id
CATALOG_SOURCES = ID_PATHS


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
    wanted = frozenset(name for h in hooks for name in h.profile_fields)
    return profiles_for(session, account_id, keys, wanted) if keys else {}


def load_catalog(
    session: Session, account_id: int, hooks: Iterable[CompiledHook], matched: dict[int, list[dict[str, Any]]]
) -> dict[tuple[str, int], CatalogEntry]:
    """Catalog entries named by events of hooks whose values read them, keyed by (kind, id): only the
    kinds each hook's values read (CompiledValues.catalog_kinds), so values such as {{uuid}} and
    {{profile_id}} cost no look-up at all."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for hook in hooks:
        sources = [(kind, CATALOG_SOURCES[kind]) for kind in sorted(hook.values.catalog_kinds)]
        if not sources:
            continue
        for event in matched[hook.id]:
            for kind, path in sources:
                ident = _field(event, path)
                if isinstance(ident, int) and not isinstance(ident, bool):
                    wanted[kind].add(ident)
    return catalog_for(session, account_id, wanted) if wanted else {}
