"""What the public capture endpoints share in one API process: sources by key, the committer, the counters."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from starlette.concurrency import run_in_threadpool

from actionhooks.capture.model import Source
from actionhooks.storage.committer import GroupCommitter

__all__ = ["CaptureContext", "CaptureMetrics", "SourceCache"]

SOURCE_CACHE_SEC = 2.0
_CACHE_MAX = 10_000
_KEY = re.compile(r"^src_[a-z2-7]{26}$")


class SourceCache:
    """key -> Source (or None: unknown) for a few seconds, so a pixel hit costs a dict look-up, not a query.

    Unknown keys are cached too (a stranger cycling random keys costs one query per key and never grows
    the cache past its bound); a key that cannot be ours is refused without a query. This API's own
    source writes call `forget`, so a stopped or deleted source stops capturing here at once; another
    API process sees the change within SOURCE_CACHE_SEC plus one look-up.

    One look-up per key at a time (single flight): when an entry expires under load, the requests
    that find it expired do not each run a query. Every query here is a SQLite write transaction
    (BEGIN IMMEDIATE), so 64 concurrent pixel hits each querying the expired source every 2 s
    queued behind the group commit and the router for the write lock (bench/capture.py, py-spy: 9%
    of the API's samples). An entry expired less than SOURCE_CACHE_SEC ago still answers while its
    refresh runs, so no hit waits for the database because a timer ran out.
    """

    def __init__(self, lookup: Callable[[str], Source | None], ttl: float = SOURCE_CACHE_SEC) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._entries: dict[str, tuple[Source | None, float]] = {}
        self._refreshing: dict[str, asyncio.Future[Source | None]] = {}
        self._forgotten = 0  # bumped by `forget`: a look-up that began before it does not store its answer
        self._lock = threading.Lock()

    async def find(self, key: str) -> Source | None:
        """The source of `key` (None: unknown), from the cache or one shared look-up off the event loop."""
        hit = self._entries.get(key)
        if hit is None and not _KEY.match(key):
            return None
        if hit is not None:
            source, expires = hit
            now = time.monotonic()
            if now < expires:
                return source
            if now < expires + self._ttl:
                self._refresh(key)
                return source
        return await asyncio.shield(self._refresh(key))

    def _refresh(self, key: str) -> asyncio.Future[Source | None]:
        running = self._refreshing.get(key)
        if running is None:
            running = asyncio.ensure_future(run_in_threadpool(self.get, key))
            self._refreshing[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        return running

    def _finished(self, key: str, done: asyncio.Future[Source | None]) -> None:
        if self._refreshing.get(key) is done:
            del self._refreshing[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failed background refresh is not "never retrieved"

    def get(self, key: str) -> Source | None:
        """The source from the database (blocking: call it off the event loop), then cached."""
        forgotten = self._forgotten
        source = self._lookup(key)
        with self._lock:
            if len(self._entries) >= _CACHE_MAX:
                self._entries.clear()
            if forgotten == self._forgotten:
                self._entries[key] = (source, time.monotonic() + self._ttl)
        return source

    def forget(self, key: str) -> None:
        with self._lock:
            self._forgotten += 1
            self._entries.pop(key, None)
            self._refreshing.pop(key, None)


class CaptureMetrics:
    """The capture counters in the API's /metrics: what was captured, and every reason something was not."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.captured = Counter("actionhooks_capture_events", "Events captured by capture sources, by kind.",
                                ["kind"], registry=registry)
        self.refused = Counter("actionhooks_capture_refused",
                               "Capture requests not captured (or refused), by kind and reason.",
                               ["kind", "reason"], registry=registry)
        self._children: dict[tuple[str, ...], Counter] = {}  # labels() costs a pixel hit ~2 µs; this a dict look-up

    def count_captured(self, kind: str, n: int) -> None:
        child = self._children.get((kind,))
        if child is None:
            child = self._children[(kind,)] = self.captured.labels(kind=kind)
        child.inc(n)

    def count_refused(self, kind: str, reason: str) -> None:
        child = self._children.get((kind, reason))
        if child is None:
            child = self._children[(kind, reason)] = self.refused.labels(kind=kind, reason=reason)
        child.inc()


@dataclass
class CaptureContext:
    sources: SourceCache
    committer: GroupCommitter
    metrics: CaptureMetrics
    max_body_bytes: int
    max_events_per_request: int
