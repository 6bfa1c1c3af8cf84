"""Group commit: the events of concurrent requests become durable in one transaction.

The API's one intake writer, for POST /events and the capture endpoints alike. A pixel in a mass
send is hit by thousands of strangers a second, and eight clients posting batches keep as many
requests in flight; one transaction per request would make the database's commit (an fsync) and its
fixed cost in statements the limit, and on SQLite the requests' threads would each wait for its one
write lock by polling it (storage/db.py), which under eight concurrent requests cost more CPU than
storing them. Instead each request hands its events to the committer and awaits a future; one writer
thread takes everything that queued while the previous transaction ran and writes it in one go, then
resolves every future. Under light load a batch is one request (no added wait); under heavy load
batches grow by themselves, which is what keeps latency bounded.

The write is the intake's (`accept_requests`: dedup as if the requests came one after the other,
one intake row per transaction, the route signal, one trigger per burst), so captured events are
matched, rendered and delivered exactly like the platform's. One transaction per account of a batch,
so one account's failure never fails another's requests; when an account's transaction fails for a
reason of its input rather than the database's state (storage/db.py UNAVAILABLE), each of its
requests is written again alone, so a request that cannot be stored fails only itself, and a
request's events are stored all or nothing.

Capture's extras ride in the same transaction: visitor identities are read and written there, so an
event accepted after an `identify` was durable always carries its profile; so is the short record of
each source's newest captures that the console shows (put_captures).

Shutdown is orderly (`close`, from the API's lifespan once uvicorn stopped taking requests): every
request already queued is committed and answered, as if no close had come, and only a request that
arrives while the committer closes is refused (ShuttingDown, a 503 like Busy).
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

from actionhooks.storage.db import UNAVAILABLE
from actionhooks.storage.intake import Accepted, Offered, accept_requests  # the one intake write path
from actionhooks.storage.sources import CAPTURES_KEPT, Identity, identities_for, put_captures, put_identities

__all__ = ["Busy", "GroupCommitter", "ShuttingDown"]

MAX_BATCH_EVENTS = 20_000  # one transaction's upper bound; the rest waits for the next
MAX_WAITING = 20_000  # requests waiting for a commit; beyond it new ones are refused at once (Busy)
MAX_WAITING_PER_ACCOUNT = 10_000  # so one account's flood leaves room for the others
# A transaction starts at most this long after the previous one started. Each costs the writer ~0.5 ms
# of CPU (statements, commit, waking the requests) however few events it holds; a commit that took
# 1 ms at 5,000 hits/s held 5 hits, so that fixed cost was ~100 CPU-µs per hit. Spacing the starts makes
# batches of 25 at that rate for at most 5 ms more wait, and a hit after a quiet spell waits for none.
COMMIT_INTERVAL_SEC = 0.005
# The spacing buys nothing, and only caps a client's rate, when no other request shared the previous
# transaction (a client posting one request after the other would get 200 transactions/s at most)
# or when this many events wait already (the fixed cost is then a few µs per event; a POST /events
# client's batches of 100 went at a 5 ms beat and cost more CPU, not less: bench/api_events.py).
PAUSE_BELOW_EVENTS = 100


class Busy(Exception):
    """The database falls behind: this many requests already wait for a commit."""


class ShuttingDown(Exception):
    """The committer is closing (the API shuts down): the request was not queued, nothing of it is
    stored; another API process (or this one, restarted) takes it."""


@dataclass(slots=True)
class _Pending:
    account_id: int
    offered: Offered
    source_id: int | None  # the source that captured the events (recorded as its recent captures)
    identities: dict[str, Identity]
    returning: frozenset[str]  # visitor ids that may have identified before (they came from a cookie)
    future: asyncio.Future[Accepted] = field(repr=False)


class GroupCommitter:
    """Owns one writer thread; `submit` returns once the events are committed (or raises what failed).

    `on_batch(requests, events)` is called after each committed transaction (the /metrics histograms).
    """

    def __init__(self, sessions: sessionmaker[Session], *, dedup_window_sec: float,
                 on_signal: Callable[[int], None],
                 on_batch: Callable[[int, int], None] = lambda requests, events: None,
                 archive: bool = False) -> None:
        self._sessions = sessions
        self._dedup_window_sec = dedup_window_sec
        self._archive = archive  # keep accepted events in the event archive too (EVENT_ARCHIVE_HOURS)
        self._on_signal = on_signal
        self._on_batch = on_batch
        self._queue: list[_Pending] = []
        self._waiting: collections.Counter[int] = collections.Counter()  # account -> requests queued
        self._threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None  # writer, signaller
        self._draining: asyncio.Task[None] | None = None
        self._closing = False  # `close` under way: new requests are refused (ShuttingDown)
        self._started = float("-inf")  # when the last transaction started (event loop clock)
        self._shared = False  # the last transaction held more than one request
        self._queued_events = 0
        self._unpruned: collections.Counter[int] = collections.Counter()  # source -> rows since its prune

    async def submit(self, account_id: int, events: list[dict[str, Any]], *, supplied_ids: list[str] | None = None,
                     trace_context: str | None = None, identities: dict[str, Identity] | None = None,
                     returning: frozenset[str] = frozenset(), source_id: int | None = None) -> Accepted:
        """Durably accept `events` of `account_id` (each with its event_id); what was queued and what
        was a duplicate. `supplied_ids`: the ids the sender gave, deduplicated within EVENT_DEDUP_HOURS;
        `trace_context`: the accept span's, stored with the intake row. Capture's: `identities`
        (visitor id -> profile) are recorded, events of the `returning` visitors get the profile they
        identified as, and with `source_id` the events are recorded as that source's recent captures.
        Busy, at once, when too many requests (or too many of this account's) wait already;
        ShuttingDown, at once, while the committer closes."""
        if self._closing:
            raise ShuttingDown("the API is shutting down")
        if len(self._queue) >= MAX_WAITING or self._waiting[account_id] >= MAX_WAITING_PER_ACCOUNT:
            raise Busy(f"{len(self._queue)} requests ({self._waiting[account_id]} of this account) wait for a commit")
        self._waiting[account_id] += 1
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        offered = Offered(events, supplied_ids or [], trace_context)
        self._queue.append(_Pending(account_id, offered, source_id, identities or {}, returning, future))
        self._queued_events += len(events)
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        if self._threads is None:  # made on first use, and again after `close` (an app served again)
            self._threads = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-commit"),
                             ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-trigger"))
        writer, signaller = self._threads
        while self._queue:
            if self._shared and self._queued_events < PAUSE_BELOW_EVENTS and not self._closing:
                pause = self._started + COMMIT_INTERVAL_SEC - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
            self._started = loop.time()
            batch = self._take()
            self._shared = len(batch) > 1
            try:
                outcomes, signals = await loop.run_in_executor(writer, self._write, batch)
            except Exception as exc:  # a bug of the writer itself: every request of the batch learns it
                outcomes, signals = [exc] * len(batch), []
            for item, outcome in zip(batch, outcomes, strict=True):
                if item.future.done():  # its request was cancelled (the client went away)
                    continue
                if isinstance(outcome, Exception):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)
            for account_id in signals:
                loop.run_in_executor(signaller, self._on_signal, account_id)

    def _take(self) -> list[_Pending]:
        taken, size = 0, 0
        for item in self._queue:
            if taken and size + len(item.offered.events) > MAX_BATCH_EVENTS:
                break
            taken += 1
            size += len(item.offered.events)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        self._queued_events -= size
        for item in batch:
            self._waiting[item.account_id] -= 1
            if not self._waiting[item.account_id]:
                del self._waiting[item.account_id]
        return batch

    def _write(self, batch: list[_Pending]) -> tuple[list[Accepted | Exception], list[int]]:
        """Each account's requests of the batch in their own transaction (usually one account); returns
        each request's outcome, in batch order, and the accounts to trigger."""
        by_account: dict[int, list[int]] = {}
        for index, item in enumerate(batch):
            by_account.setdefault(item.account_id, []).append(index)
        outcomes: dict[int, Accepted | Exception] = {}
        signals: list[int] = []
        for account_id, indexes in by_account.items():
            written = self._write_account(account_id, [batch[i] for i in indexes])
            for index, outcome in zip(indexes, written, strict=True):
                outcomes[index] = outcome
            if any(isinstance(o, Accepted) and o.signal_raised for o in written):
                signals.append(account_id)
        return [outcomes[index] for index in range(len(batch))], signals

    def _write_account(self, account_id: int, items: list[_Pending]) -> list[Accepted | Exception]:
        """One transaction for `items`; when it fails for a reason of its input, each request alone."""
        try:
            return self._transaction(account_id, items)
        except Exception as exc:  # nothing of it was committed
            if len(items) == 1 or isinstance(exc, UNAVAILABLE):  # alone, they would fail the same way
                return [exc] * len(items)
        return [outcome for item in items for outcome in self._write_account(account_id, [item])]

    def _transaction(self, account_id: int, items: list[_Pending]) -> list[Accepted]:
        now = time.time()
        with self._sessions() as session:
            _join_visitors(session, account_id, items)
            learned = {v: who for item in items for v, who in item.identities.items()}
            put_identities(session, account_id, learned, now)
            recent = _by_source(items)
            put_captures(session, account_id, recent, now, prune=self._to_prune(recent))
            accepted = accept_requests(session, account_id, [item.offered for item in items],
                                       dedup_window_sec=self._dedup_window_sec, archive=self._archive)
        self._on_batch(len(items), sum(len(item.offered.events) for item in items))
        return accepted

    async def close(self) -> None:
        """Orderly shutdown (the API's lifespan, after uvicorn stopped taking requests and let the ones
        under way finish). From the call on, a new request is refused at once (ShuttingDown, which the
        API answers 503 + Retry-After). Everything already accepted into the queue is committed before
        close returns: the transaction under way finishes, the requests queued behind it are written
        in the transactions that follow (no spacing pause: nothing can join them), and each request
        gets its own outcome exactly as without the close. A queued request was not acknowledged yet,
        but its client sent it and may still be waiting; storing it is the least surprising outcome
        (one that went away and sends it again is deduplicated if it gave its event ids), and the queue
        is bounded (MAX_WAITING), so the wait is too. Then the route triggers under way finish and both threads
        stop. A closed committer is as new: a later `submit` starts its threads again (an app served
        again). One event loop at a time: close runs on the loop of the requests it waits for."""
        self._closing = True
        try:
            draining = self._draining
            if draining is not None and not draining.done():
                await asyncio.shield(draining)  # a cancelled close leaves the queue's requests their commit
            threads, self._threads = self._threads, None
            if threads is not None:
                await asyncio.to_thread(_shut_down, threads)
        finally:
            self._closing = False

    def _to_prune(self, recent: dict[int, list[dict[str, Any]]]) -> list[int]:
        """Sources that gained CAPTURES_KEPT rows of recent captures since their last prune (writer thread only)."""
        due = []
        for source_id in recent:
            self._unpruned[source_id] += 1
            if self._unpruned[source_id] >= CAPTURES_KEPT:
                due.append(source_id)
                del self._unpruned[source_id]
        return due


def _shut_down(pools: tuple[ThreadPoolExecutor, ...]) -> None:
    for pool in pools:
        pool.shutdown(wait=True)


def _by_source(items: list[_Pending]) -> dict[int, list[dict[str, Any]]]:
    by_source: dict[int, list[dict[str, Any]]] = {}
    for item in items:
        if item.source_id is not None and item.offered.events:
            by_source.setdefault(item.source_id, []).extend(item.offered.events)
    return by_source


def _join_visitors(session: Session, account_id: int, items: list[_Pending]) -> None:
    """Give each anonymous event of a returning, identified visitor its profile (in place, in arrival
    order). Only requests with a visitor from a cookie (`returning`) are joined: POST /events never is,
    and a first visit's visitor id is new."""
    visitors = {visitor for item in items for visitor in item.returning}
    if not visitors:
        return
    known = identities_for(session, account_id, visitors)
    for item in items:
        if item.returning:
            for event in item.offered.events:
                who = known.get(event["event_data"].get("visitor_id") or "")
                if who is not None and event.get("profile_id") is None:
                    event["profile_id"], list_id = who
                    if list_id is not None:
                        event["list_id"] = list_id
        known.update(item.identities)  # later requests of this batch see this request's identify
