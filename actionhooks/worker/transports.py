"""Transports reused per worker process: one per hook, replaced when the hook's version changes.

Created lazily, so a prefork child opens its own connections after the fork. A transport is held
(`using`) for each round of sends and *retired* when its hook changes or is deleted (the hook
cache calls `retire`): it is closed only when the last round using it ends. Closing earlier fails
sends in flight (an httpx client closed under another thread: "Cannot send a request, as the
client has been closed"), and a broker transport's close waits for its send to finish. So no
transport is created or closed while the cache's lock is held: the lock guards only the table and
the use counts, never network I/O.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from actionhooks.delivery import Transport, make_transport
from actionhooks.hooks.matching import CompiledHook
from actionhooks.settings import Settings

log = logging.getLogger(__name__)

# How a transport is made for a hook's delivery config: the registry's make_transport, or, in the
# worker's own tests, one that hands out the shipped StubTransport.
TransportFactory = Callable[[Any, Settings], Transport[Any]]


@dataclass(eq=False)
class _Entry:
    version: int
    transport: Transport[Any]
    users: int = 0
    retired: bool = False


class TransportCache:
    def __init__(self, settings: Settings, factory: TransportFactory = make_transport) -> None:
        self.settings = settings
        self._factory = factory
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()

    @contextmanager
    def using(self, hook: CompiledHook) -> Iterator[Transport[Any]]:
        """The hook's transport for the duration of the block; it stays open until the block ends."""
        entry = self._acquire(hook)
        try:
            yield entry.transport
        finally:
            with self._lock:
                entry.users -= 1
                idle_and_retired = entry.retired and entry.users == 0
            if idle_and_retired:
                self._close(entry.transport)

    def _acquire(self, hook: CompiledHook) -> _Entry:
        with self._lock:
            entry = self._entries.get(hook.id)
            if entry is not None and entry.version == hook.version:
                entry.users += 1
                return entry
        made = _Entry(hook.version, self._factory(hook.delivery, self.settings), users=1)  # outside the lock
        with self._lock:
            entry = self._entries.get(hook.id)
            if entry is not None and entry.version == hook.version:  # another thread made one meanwhile
                entry.users += 1
                spare: Transport[Any] | None = made.transport
            else:
                self._entries[hook.id] = made
                entry, spare = made, self._retire_locked(entry)
        if spare is not None:
            self._close(spare)
        return entry

    def retire(self, hook_id: int, keep_version: int | None = None) -> None:
        """The hook changed (to `keep_version`) or is gone (None): close its transport of another version
        once no send uses it any more."""
        with self._lock:
            entry = self._entries.get(hook_id)
            if entry is None or entry.version == keep_version:
                return
            del self._entries[hook_id]
            idle = self._retire_locked(entry)
        if idle is not None:
            self._close(idle)

    def prune(self) -> None:
        """Let every cached transport close its connections idle past their expiry (the runtime's
        watcher calls this each round): a hook that stops getting events keeps no socket open. Never
        raises; the transports are called outside the lock."""
        with self._lock:
            transports = [entry.transport for entry in self._entries.values()]
        for transport in transports:
            try:
                transport.prune()
            except Exception:
                log.warning("closing a transport's idle connections failed", exc_info=True)

    def close_all(self) -> None:
        """Retire every transport (on shutdown): idle ones are closed now, busy ones when their sends end."""
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
            idle = [t for t in (self._retire_locked(e) for e in entries) if t is not None]
        for transport in idle:
            self._close(transport)

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _retire_locked(entry: _Entry | None) -> Transport[Any] | None:
        """Mark `entry` retired (caller holds the lock); its transport when nobody uses it, to close."""
        if entry is None:
            return None
        entry.retired = True
        return entry.transport if entry.users == 0 else None

    @staticmethod
    def _close(transport: Transport[Any]) -> None:
        try:
            transport.close()
        except Exception:
            log.warning("closing a transport failed", exc_info=True)
