"""Group commit: the events of concurrent capture requests become durable in one transaction.

A pixel in a mass send is hit by thousands of strangers a second; one transaction per hit would make
the database's commit (an fsync) the limit. Instead each request hands its events to the committer
and awaits a future; one writer thread takes everything that queued while the previous transaction
ran and writes it in one go, then resolves every future. Under light load a batch is one request
(no added wait); under heavy load batches grow by themselves, which is what keeps latency bounded.

The write reuses the intake path of POST /events (`accept_events`: one intake row per account and
batch, the route signal, one trigger per burst), so captured events are matched, rendered and
delivered exactly like the platform's. Visitor identities are read and written in the same
transaction: an event accepted after an `identify` was durable always carries its profile. So is
the short record of each source's newest captures that the console shows (put_captures).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage.intake import accept_events  # the one intake write path
from actionhooks.storage.sources import CAPTURES_KEPT, Identity, identities_for, put_captures, put_identities

__all__ = ["Busy", "GroupCommitter"]

MAX_BATCH_EVENTS = 20_000  # one transaction's upper bound; the rest waits for the next
MAX_WAITING = 20_000  # requests waiting for a commit; beyond it new ones are refused at once (Busy)
MAX_WAITING_PER_ACCOUNT = 10_000  # so one account's flood leaves room for the others
# A transaction starts at most this long after the previous one started. Each costs the writer ~0.5 ms
# of CPU (statements, commit, waking the requests) however few events it holds; a commit that took
# 1 ms at 5,000 hits/s held 5 hits, so that fixed cost was ~100 CPU-µs per hit. Spacing the starts makes
# batches of 25 at that rate for at most 5 ms more wait, and a hit after a quiet spell waits for none.
COMMIT_INTERVAL_SEC = 0.005


class Busy(Exception):
    """The database falls behind: this many requests already wait for a commit."""


@dataclass(slots=True)
class _Pending:
    account_id: int
    source_id: int | None  # the source that captured the events (recorded as its recent captures)
    events: list[dict[str, Any]]
    identities: dict[str, Identity]
    returning: frozenset[str]  # visitor ids that may have identified before (they came from a cookie)
    supplied: bool  # the events' ids came from the sender: a repeat within the dedup window is dropped
    future: asyncio.Future[None] = field(repr=False)


class GroupCommitter:
    """Owns one writer thread; `submit` returns once the events are committed (or raises what failed)."""

    def __init__(self, sessions: sessionmaker[Session], *, dedup_window_sec: float,
                 on_signal: Callable[[int], None], on_batch: Callable[[int], None] = lambda n: None,
                 archive: bool = False) -> None:
        self._sessions = sessions
        self._dedup_window_sec = dedup_window_sec
        self._archive = archive  # keep captured events in the event archive too (EVENT_ARCHIVE_HOURS)
        self._on_signal = on_signal
        self._on_batch = on_batch
        self._queue: list[_Pending] = []
        self._waiting: collections.Counter[int] = collections.Counter()  # account -> requests queued
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-commit")
        self._signaller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-trigger")
        self._draining: asyncio.Task[None] | None = None
        self._started = float("-inf")  # when the last transaction started (event loop clock)
        self._unpruned: collections.Counter[int] = collections.Counter()  # source -> rows since its prune

    async def submit(self, account_id: int, events: list[dict[str, Any]],
                     identities: dict[str, Identity] | None = None, returning: frozenset[str] = frozenset(),
                     *, supplied_ids: bool = False, source_id: int | None = None) -> None:
        """Durably accept `events` of `account_id`, recording `identities` (visitor id -> profile) and
        giving events of the `returning` visitors the profile they identified as. With `supplied_ids`
        the events' ids are the sender's, deduplicated like POST /events (EVENT_DEDUP_HOURS); with
        `source_id` they are recorded as that source's recent captures."""
        if len(self._queue) >= MAX_WAITING or self._waiting[account_id] >= MAX_WAITING_PER_ACCOUNT:
            raise Busy(f"{len(self._queue)} capture requests ({self._waiting[account_id]} of this account) wait")
        self._waiting[account_id] += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(account_id, source_id, events, identities or {}, returning, supplied_ids, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            pause = self._started + COMMIT_INTERVAL_SEC - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            self._started = loop.time()
            batch = self._take()
            try:
                signals, failed = await loop.run_in_executor(self._writer, self._write, batch)
            except Exception as exc:  # e.g. no connection: every request of the batch learns it failed
                signals, failed = [], {item.account_id: exc for item in batch}
            for item in batch:
                if item.future.done():
                    continue
                if item.account_id in failed:
                    item.future.set_exception(failed[item.account_id])
                else:
                    item.future.set_result(None)
            for account_id in signals:
                loop.run_in_executor(self._signaller, self._on_signal, account_id)

    def _take(self) -> list[_Pending]:
        taken, size = 0, 0
        for item in self._queue:
            if taken and size + len(item.events) > MAX_BATCH_EVENTS:
                break
            taken += 1
            size += len(item.events)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        for item in batch:
            self._waiting[item.account_id] -= 1
            if not self._waiting[item.account_id]:
                del self._waiting[item.account_id]
        return batch

    def _write(self, batch: list[_Pending]) -> tuple[list[int], dict[int, Exception]]:
        """One transaction per account of the batch (usually one), so one account's failure never
        fails another's events; returns the accounts to trigger and the accounts that failed."""
        by_account: dict[int, list[_Pending]] = {}
        for item in batch:
            by_account.setdefault(item.account_id, []).append(item)
        signals: list[int] = []
        failed: dict[int, Exception] = {}
        now = time.time()
        for account_id, items in by_account.items():
            try:
                with self._sessions() as session:
                    events = _join_visitors(session, account_id, items)
                    learned = {v: who for item in items for v, who in item.identities.items()}
                    put_identities(session, account_id, learned, now)
                    recent = _by_source(items)
                    prune = self._to_prune(recent)
                    put_captures(session, account_id, recent, now, prune=prune)
                    supplied = [e["event_id"] for item in items if item.supplied for e in item.events]
                    accepted = accept_events(session, account_id, events, supplied_ids=supplied,
                                             dedup_window_sec=self._dedup_window_sec, archive=self._archive)
            except Exception as exc:  # reported to this account's requests; nothing of it was committed
                failed[account_id] = exc
                continue
            if accepted.signal_raised:
                signals.append(account_id)
            self._on_batch(len(events))
        return signals, failed

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._signaller.shutdown(wait=True)


    def _to_prune(self, recent: dict[int, list[dict[str, Any]]]) -> list[int]:
        """Sources that gained CAPTURES_KEPT rows of recent captures since their last prune (writer thread only)."""
        due = []
        for source_id in recent:
            self._unpruned[source_id] += 1
            if self._unpruned[source_id] >= CAPTURES_KEPT:
                due.append(source_id)
                del self._unpruned[source_id]
        return due


def _by_source(items: list[_Pending]) -> dict[int, list[dict[str, Any]]]:
    by_source: dict[int, list[dict[str, Any]]] = {}
    for item in items:
        if item.source_id is not None and item.events:
            by_source.setdefault(item.source_id, []).extend(item.events)
    return by_source


def _join_visitors(session: Session, account_id: int, items: list[_Pending]) -> list[dict[str, Any]]:
    """The batch's events in arrival order, each anonymous event of an identified visitor given its profile."""
    visitors = {visitor for item in items for visitor in item.returning}
    known = identities_for(session, account_id, visitors) if visitors else {}
    events = []
    for item in items:
        for event in item.events:
            who = known.get(event["event_data"].get("visitor_id") or "")
            if who is not None and event.get("profile_id") is None:
                event["profile_id"], list_id = who
                if list_id is not None:
                    event["list_id"] = list_id
            events.append(event)
        known.update(item.identities)  # later requests of this batch see this request's identify
    return events
