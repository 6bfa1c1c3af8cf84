"""Each worker process's compiled hooks, kept current by polling the hook_changes log.

Hooks are compiled once per change (filters, templates, delivery config), not per event. A refresh
costs one indexed query when nothing changed. Change ids come from a sequence, and two admin
transactions can commit out of id order; an id we skipped ("gap") is therefore looked at again on
later refreshes for GAP_TTL_SEC before we conclude its transaction rolled back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from actionhooks.hooks.matching import CompiledHook, HookIndex, compile_hook
from actionhooks.settings import Settings
from actionhooks.storage.tables import Hook, HookChange

log = logging.getLogger(__name__)

GAP_TTL_SEC = 60.0
MIN_REFRESH_INTERVAL_SEC = 0.2

HOOK_COLUMNS = (
    "id",
    "account_id",
    "version",
    "active",
    "name",
    "database_id",
    "actions",
    "filters",
    "custom_data",
    "include_content",
    "delivery",
)


def hook_row(hook: Hook) -> dict[str, Any]:
    return {name: getattr(hook, name) for name in HOOK_COLUMNS}


class HookCache:
    """Compiled hooks of all accounts, indexed for matching; `on_change(hook_id)` runs for each changed hook."""

    def __init__(self, settings: Settings, on_change: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.index = HookIndex([])
        self.by_id: dict[int, CompiledHook] = {}
        self.active_since: dict[int, float] = {}
        self._on_change = on_change
        self._last_id: int | None = None
        self._gaps: dict[int, float] = {}
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def get(self, hook_id: int) -> CompiledHook | None:
        return self.by_id.get(hook_id)

    def capturing(self, event: dict[str, Any], accepted_at: float) -> list[CompiledHook]:
        """The hooks that match `event` and were already active when it was accepted."""
        return [h for h in self.index.candidates(event) if self.active_since.get(h.id, 0.0) <= accepted_at]

    def refresh(self, session: Session, *, force: bool = False) -> None:
        """Bring the cache up to date with the database (cheap when nothing changed)."""
        now = time.monotonic()
        if not force and now - self._checked_at < MIN_REFRESH_INTERVAL_SEC:
            return
        with self._lock:
            self._checked_at = now
            if self._last_id is None:
                self._load_all(session)
                return
            rows = session.execute(
                select(HookChange.id, HookChange.hook_id).where(
                    or_(HookChange.id > self._last_id, HookChange.id.in_(list(self._gaps)))
                )
            ).all()
            if not rows:
                self._expire_gaps(now)
                return
            seen = {change_id for change_id, _ in rows}
            top = max(*seen, self._last_id)
            for missing in range(self._last_id + 1, top):
                if missing not in seen:
                    self._gaps.setdefault(missing, now)
            for change_id in seen:
                self._gaps.pop(change_id, None)
            self._last_id = top
            self._expire_gaps(now)
            self._reload(session, {hook_id for _, hook_id in rows})

    def _expire_gaps(self, now: float) -> None:
        for gap, noticed in list(self._gaps.items()):
            if now - noticed > GAP_TTL_SEC:
                del self._gaps[gap]

    def _load_all(self, session: Session) -> None:
        self._last_id = session.scalar(select(HookChange.id).order_by(HookChange.id.desc()).limit(1)) or 0
        rows = list(session.scalars(select(Hook)))
        self.active_since = {h.id: h.active_since for h in rows}
        compiled = [c for c in (self._compile(h) for h in rows) if c is not None]
        self.by_id = {c.id: c for c in compiled}
        self.index = HookIndex(compiled)

    def _reload(self, session: Session, hook_ids: set[int]) -> None:
        found = {h.id: h for h in session.scalars(select(Hook).where(Hook.id.in_(hook_ids)))}
        for hook_id in hook_ids:
            current = self.by_id.get(hook_id)
            row = found.get(hook_id)
            if row is not None and current is not None and current.version == row.version:
                continue
            compiled = self._compile(row) if row is not None else None
            if row is not None:
                self.active_since[hook_id] = row.active_since
            if compiled is None:
                self.active_since.pop(hook_id, None)
                self.by_id.pop(hook_id, None)
                self.index.remove(hook_id)
            else:
                self.by_id[hook_id] = compiled
                self.index.replace(compiled)
            if self._on_change is not None:
                self._on_change(hook_id)

    def _compile(self, hook: Hook) -> CompiledHook | None:
        try:
            return compile_hook(hook_row(hook), self.settings)
        except Exception:
            # The API validates at save, so this means a hook saved by an older version; skip it, loudly.
            log.exception("hook %s cannot be compiled; it is ignored until fixed", hook.id)
            return None
