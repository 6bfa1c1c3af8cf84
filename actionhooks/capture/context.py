"""What the public capture endpoints share in one API process: sources by key, the committer, the counters."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from actionhooks.capture.committer import GroupCommitter
from actionhooks.capture.model import Source

__all__ = ["CaptureContext", "CaptureMetrics", "SourceCache"]

SOURCE_CACHE_SEC = 2.0
_CACHE_MAX = 10_000
_KEY = re.compile(r"^src_[a-z2-7]{26}$")


class SourceCache:
    """key -> Source (or None: unknown) for a few seconds, so a pixel hit costs a dict look-up, not a query.

    Unknown keys are cached too (a stranger cycling random keys costs one query per key and never grows
    the cache past its bound); a key that cannot be ours is refused without a query. This API's own
    source writes call `forget`, so a stopped or deleted source stops capturing here at once; another
    API process sees the change within SOURCE_CACHE_SEC.
    """

    def __init__(self, lookup: Callable[[str], Source | None], ttl: float = SOURCE_CACHE_SEC) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._entries: dict[str, tuple[Source | None, float]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, Source | None]:
        """(True, source or None) from the cache, or (False, None) when `get` must ask the database."""
        if not _KEY.match(key):
            return True, None
        hit = self._entries.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return True, hit[0]
        return False, None

    def get(self, key: str) -> Source | None:
        """The source from the database (blocking: call it off the event loop), then cached."""
        source = self._lookup(key)
        with self._lock:
            if len(self._entries) >= _CACHE_MAX:
                self._entries.clear()
            self._entries[key] = (source, time.monotonic() + self._ttl)
        return source

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


class CaptureMetrics:
    """The capture counters in the API's /metrics: what was captured, and every reason something was not."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.captured = Counter("actionhooks_capture_events", "Events captured by capture sources, by kind.",
                                ["kind"], registry=registry)
        self.refused = Counter("actionhooks_capture_refused",
                               "Capture requests not captured (or refused), by kind and reason.",
                               ["kind", "reason"], registry=registry)
        self.batch = Histogram("actionhooks_capture_commit_batch_events",
                               "Events made durable per group-commit transaction.",
                               buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000), registry=registry)


@dataclass
class CaptureContext:
    sources: SourceCache
    committer: GroupCommitter
    metrics: CaptureMetrics
    max_body_bytes: int
    max_events_per_request: int
