"""Transports reused per worker process: one per hook, replaced when the hook's version changes.

Created lazily, so a prefork child opens its own connections after the fork; closed when the hook
changes or is deleted (the hook cache calls `drop`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from actionhooks.delivery import Transport, make_transport
from actionhooks.hooks.matching import CompiledHook
from actionhooks.settings import Settings

log = logging.getLogger(__name__)

# How a transport is made for a hook's delivery config: the registry's make_transport, or, in the
# worker's own tests, one that hands out the shipped StubTransport.
TransportFactory = Callable[[Any, Settings], Transport[Any]]


class TransportCache:
    def __init__(self, settings: Settings, factory: TransportFactory = make_transport) -> None:
        self.settings = settings
        self._factory = factory
        self._entries: dict[int, tuple[int, Transport[Any]]] = {}
        self._lock = threading.Lock()

    def get(self, hook: CompiledHook) -> Transport[Any]:
        with self._lock:
            entry = self._entries.get(hook.id)
            if entry is not None and entry[0] == hook.version:
                return entry[1]
            if entry is not None:
                self._close(entry[1])
            transport = self._factory(hook.delivery, self.settings)
            self._entries[hook.id] = (hook.version, transport)
            return transport

    def drop(self, hook_id: int) -> None:
        with self._lock:
            entry = self._entries.pop(hook_id, None)
        if entry is not None:
            self._close(entry[1])

    def close_all(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for _, transport in entries:
            self._close(transport)

    @staticmethod
    def _close(transport: Transport[Any]) -> None:
        try:
            transport.close()
        except Exception:
            log.warning("closing a transport failed", exc_info=True)
