"""A value read at most once per `ttl` seconds per process: the figures /healthz and /metrics show."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["CACHE_SEC", "Cached"]

CACHE_SEC = 2.0

T = TypeVar("T")


class Cached(Generic[T]):
    """`read()` at most once per `ttl` seconds; a read that raises is not cached (the next get reads again)."""

    def __init__(self, read: Callable[[], T], ttl: float = CACHE_SEC) -> None:
        self._read = read
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: T | None = None
        self._expires = 0.0

    def get(self) -> T:
        with self._lock:  # one read at a time; concurrent callers share it
            now = time.monotonic()
            if self._value is None or now >= self._expires:
                self._value = self._read()
                self._expires = now + self._ttl
            return self._value
