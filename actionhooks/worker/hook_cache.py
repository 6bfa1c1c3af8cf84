"""Each worker process's compiled hooks, kept current by polling the hook_changes log.

Hooks are compiled once per change (filters, templates, delivery config), not per event. A refresh
costs one indexed query when nothing changed. Change ids come from a sequence, and two admin
transactions can commit out of id order; an id we skipped ("gap") is therefore looked at again on
later refreshes for GAP_TTL_SEC before we conclude its transaction rolled back. A change committed
later still than that is caught by the full reload every FULL_RELOAD_SEC (hook ids and versions are
compared; only hooks whose version differs are read and compiled again).

Concurrency: what routers and drains read (index, hooks by id, activation times) is one immutable
snapshot, swapped in a single assignment, so a reader never sees a change half-applied and takes
no lock. Refreshes are serialised by a lock held only across *reads*, made in sessions that never
take the database's write lock (SQLite: a deferred transaction, which in WAL mode never waits for a
writer). A router that holds SQLite's write lock may therefore wait for this lock: its holder never
waits for the router. `on_change` (which retires transports) runs after the lock is released.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.errors import HookValidationError
from actionhooks.hooks.matching import CompiledHook, HookIndex, compile_hook
from actionhooks.settings import Settings
from actionhooks.storage.hooks import hook_row
from actionhooks.storage.tables import Hook, HookChange

log = logging.getLogger(__name__)

GAP_TTL_SEC = 60.0
FULL_RELOAD_SEC = 30.0
MIN_REFRESH_INTERVAL_SEC = 0.2

# Called after a refresh for every hook whose version changed: (hook id, the version now compiled,
# or None when the hook is gone or cannot be compiled).
OnChange = Callable[[int, int | None], None]
# Called after a refresh for every hook version this cache found it cannot compile, with the reason.
OnBroken = Callable[[int, int, HookValidationError], None]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What readers see; never changed once published (a refresh publishes a new one)."""

    index: HookIndex
    by_id: Mapping[int, CompiledHook]
    active_since: Mapping[int, float]


class HookCache:
    """Compiled hooks of all accounts, indexed for matching.

    `sessions` must make read-only sessions (storage.db.reader_factory); `on_change` runs for each
    changed hook after the refresh that saw it, `on_broken` for each hook version that cannot be
    compiled (a hook saved by an older version under rules it no longer meets): that hook is left
    out of matching, so its events are not delivered, until it is changed.
    """

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], on_change: OnChange | None = None,
        on_broken: OnBroken | None = None,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._snapshot = _Snapshot(HookIndex(), {}, {})
        self._on_change = on_change
        self._on_broken = on_broken
        self._new_broken: list[tuple[int, int, HookValidationError]] = []  # found by this refresh, under the lock
        self._last_id: int | None = None
        self._gaps: dict[int, float] = {}
        self._broken: dict[int, int] = {}  # hook id -> version that failed to compile (not retried by reloads)
        self._checked_at = 0.0
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self.full_reload_sec = FULL_RELOAD_SEC
        self.gap_ttl_sec = GAP_TTL_SEC

    @property
    def index(self) -> HookIndex:
        return self._snapshot.index

    def get(self, hook_id: int) -> CompiledHook | None:
        return self._snapshot.by_id.get(hook_id)

    def capturing(self, event: dict[str, Any], accepted_at: float) -> list[CompiledHook]:
        """The hooks that match `event` and were already active when it was accepted."""
        snap = self._snapshot  # one snapshot for the whole question
        return [h for h in snap.index.candidates(event) if snap.active_since.get(h.id, 0.0) <= accepted_at]

    def refresh(self, *, force: bool = False) -> None:
        """Bring the cache up to date with the database (cheap when nothing changed).

        With `force`, every change committed before the call is seen when it returns (the router
        calls it after claiming events, so hooks changed before those events were accepted apply)."""
        now = time.monotonic()
        if not force and now - self._checked_at < MIN_REFRESH_INTERVAL_SEC:
            return
        with self._lock:
            self._checked_at = now
            with self._sessions() as session:
                last_id = self._last_id
                if last_id is None or now - self._loaded_at >= self.full_reload_sec:
                    changed = self._load_all(session, now)
                else:
                    changed = self._catch_up(session, now, last_id)
            broken, self._new_broken = self._new_broken, []
        if self._on_change is not None:
            for hook_id, version in changed:
                self._on_change(hook_id, version)
        if self._on_broken is not None:
            for hook_id, version, error in broken:
                self._on_broken(hook_id, version, error)

    def _catch_up(self, session: Session, now: float, last_id: int) -> list[tuple[int, int | None]]:
        """The hooks of the changes logged after `last_id` (the newest change already applied) and of the gaps."""
        rows = session.execute(
            select(HookChange.id, HookChange.hook_id).where(
                or_(HookChange.id > last_id, HookChange.id.in_(list(self._gaps)))
            )
        ).all()
        self._expire_gaps(now)
        if not rows:
            return []
        seen = {change_id for change_id, _ in rows}
        top = max(*seen, last_id)
        for missing in range(last_id + 1, top):
            if missing not in seen:
                self._gaps.setdefault(missing, now)
        for change_id in seen:
            self._gaps.pop(change_id, None)
        self._last_id = top
        hook_ids = {hook_id for _, hook_id in rows}
        found = {h.id: h for h in session.scalars(select(Hook).where(Hook.id.in_(hook_ids)))}
        return self._apply(found, gone=hook_ids - set(found))

    def _expire_gaps(self, now: float) -> None:
        for gap, noticed in list(self._gaps.items()):
            if now - noticed > self.gap_ttl_sec:
                del self._gaps[gap]

    def _load_all(self, session: Session, now: float) -> list[tuple[int, int | None]]:
        """Every hook: on start, and every FULL_RELOAD_SEC for changes whose log entry we missed."""
        last_id = session.scalar(select(HookChange.id).order_by(HookChange.id.desc()).limit(1)) or 0
        versions = dict(session.execute(select(Hook.id, Hook.version)).tuples().all())
        known = self._snapshot.by_id
        stale = [hook_id for hook_id, version in versions.items()
                 if ((hook := known.get(hook_id)) is None or hook.version != version)
                 and self._broken.get(hook_id) != version]
        found = {h.id: h for h in session.scalars(select(Hook).where(Hook.id.in_(stale)))} if stale else {}
        first = self._last_id is None
        self._last_id = max(last_id, self._last_id or 0)
        self._loaded_at = now
        self._expire_gaps(now)
        changed = self._apply(found, gone={hook_id for hook_id in known if hook_id not in versions})
        return [] if first else changed

    def _apply(self, rows: Mapping[int, Hook], gone: set[int]) -> list[tuple[int, int | None]]:
        """Publish a snapshot with `rows` (compiled when their version is new) and without `gone`."""
        old = self._snapshot
        by_id = dict(old.by_id)
        active_since = dict(old.active_since)
        put: list[CompiledHook] = []
        drop: list[int] = []
        changed: list[tuple[int, int | None]] = []
        for hook_id, row in rows.items():
            current = by_id.get(hook_id)
            if current is not None and current.version == row.version:
                continue
            compiled = self._compile(row)
            if compiled is None:
                self._broken[hook_id] = row.version
                gone.add(hook_id)
                continue
            self._broken.pop(hook_id, None)
            by_id[hook_id] = compiled
            active_since[hook_id] = row.active_since
            put.append(compiled)
            changed.append((hook_id, compiled.version))
        for hook_id in gone:
            if hook_id not in rows:
                self._broken.pop(hook_id, None)
            active_since.pop(hook_id, None)
            if by_id.pop(hook_id, None) is not None:
                drop.append(hook_id)
            changed.append((hook_id, None))
        if put or drop:
            self._snapshot = _Snapshot(old.index.changed(put=put, drop=drop), by_id, active_since)
        return changed

    def _compile(self, hook: Hook) -> CompiledHook | None:
        """The hook compiled, or None when it breaks a rule of this version (HookValidationError, the one
        error a stored hook can raise): the API validates at save, so it was saved by an older version
        (e.g. a template over limits added since). Logged with the reason, reported to `on_broken`."""
        try:
            return compile_hook(hook_row(hook), self.settings)
        except HookValidationError as exc:
            log.error("hook %s (version %s) cannot be compiled, so it matches no event until it is changed: %s",
                      hook.id, hook.version, exc)
            self._new_broken.append((hook.id, hook.version, exc))
            return None
