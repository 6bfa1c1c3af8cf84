"""What a worker process keeps between tasks: database engine, compiled hooks, transports, retry policy.

Created lazily on the first task of each process, so prefork children build their own engine and
connections after the fork (a connection inherited across fork is shared by two processes), and
closed when the process stops (worker/tasks.py connects `close_runtime` to Celery's
worker_process_shutdown and worker_shutdown signals): transports (broker connections, Kafka
producers, HTTP connection pools), the hook watcher, the database engine and the app's producer pool.
"""

from __future__ import annotations

import collections
import gc
import logging
import os
import threading

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from actionhooks import tracing
from actionhooks.broker.celery_app import close_celery
from actionhooks.broker.triggers import Triggers
from actionhooks.delivery import make_transport
from actionhooks.delivery.retry import RetryPolicy
from actionhooks.errors import HookValidationError
from actionhooks.hooks.matching import CompiledHook
from actionhooks.hooks.models import HookSpec
from actionhooks.settings import Settings
from actionhooks.storage import stats
from actionhooks.storage.db import engine_from_settings, reader_factory, session_factory
from actionhooks.worker.batching import batch_limits
from actionhooks.worker.hook_cache import HookCache
from actionhooks.worker.transports import TransportCache, TransportFactory

HTTP_SEND_THREADS = 4
# Hooks whose batches hold at most SMALL_BATCH_EVENTS events (GET-mode receivers take one per request)
# send on more threads: a round's claim and record transactions are shared by its batches, and with
# one event per batch those round trips, not the sends, bounded a drain (bench/e2e_http.py --max-batch 1).
SMALL_BATCH_SEND_THREADS = 16
SMALL_BATCH_EVENTS = 5
# Batches each sending thread gets per claim round: the round's claim and record statements are
# shared by all of them, so two per thread halve that bookkeeping per event (measured in the commit);
# with small batches that bookkeeping, not the sends, is most of a drain's CPU, and four per thread
# took the worker from 512 to 369 CPU-µs per event with one event per batch (eight: 348).
SENDS_PER_THREAD = 2
SMALL_BATCH_SENDS_PER_THREAD = 4
HOOK_WATCH_SEC = 2.0

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        celery: Celery,
        engine: Engine | None = None,
        transport_factory: TransportFactory = make_transport,
    ) -> None:
        self.settings = settings
        self.engine = engine or engine_from_settings(settings)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.celery = celery
        self.triggers = Triggers(celery)
        self.transports = TransportCache(settings, transport_factory)
        self.hooks = HookCache(settings, reader_factory(self.engine), on_change=self.transports.retire,
                               on_broken=self._note_broken)
        self.policy = RetryPolicy.from_settings(settings)
        self._closed = threading.Event()
        self._uncounted: collections.deque[str] = collections.deque()  # see _note_broken
        self._tasks: collections.deque[str] = collections.deque()  # see count_task
        self._unflushed = stats.Tally()  # counts the database could not take yet (watcher thread only)
        self._watcher: threading.Thread | None = None

    def _note_broken(self, hook_id: int, version: int, error: HookValidationError) -> None:
        """Keep a hook version the cache cannot compile for the count in /metrics, by the hook field of its
        first error. Only noted here: the refresh may run in a router that holds SQLite's write lock."""
        field = str(error.errors[0][0][0]) if error.errors and error.errors[0][0] else ""
        self._uncounted.append(field if field in HookSpec.model_fields else "other")

    def count_task(self, name: str) -> None:
        """Note a route or drain task for actionhooks_worker_tasks_total. Added by the watcher (every
        HOOK_WATCH_SEC, and at close), not by the task: a statement of its own in each task's
        transaction cost ~4% of the worker's CPU at 20 tasks/s (py-spy, bench/capture.py paced)."""
        self._tasks.append(name)

    def _flush_counts(self) -> None:
        """Add the noted hook versions (actionhooks_hooks_not_compiled_total) and tasks
        (actionhooks_worker_tasks_total), in a transaction of the watcher's own. What the database cannot
        take now stays summed in one tally (a value per label set, however long it is down) for the
        next round."""
        tally = self._unflushed
        for _ in range(len(self._uncounted)):  # only the watcher pops
            tally.hook_not_compiled(self._uncounted.popleft())
        for _ in range(len(self._tasks)):
            tally.task(self._tasks.popleft())
        if not tally.values:
            return
        try:
            with self.sessions.begin() as session:
                stats.add(session, tally)
        except SQLAlchemyError:
            log.warning("could not add %d worker count(s) to the database; trying again", len(tally.values),
                        exc_info=True)
            return
        self._unflushed = stats.Tally()

    def send_parallelism(self, hook: CompiledHook) -> int:
        """HTTP batches of one hook go out on a few threads sharing one keep-alive client (more for
        small batches); broker transports hold one channel/producer that pipelines internally, so
        they send one batch at a time."""
        if hook.delivery.type != "http":
            return 1
        return SMALL_BATCH_SEND_THREADS if _small_batches(hook) else HTTP_SEND_THREADS

    def sends_per_thread(self, hook: CompiledHook) -> int:
        """How many batches each sending thread gets per claim round (one after the other)."""
        return SMALL_BATCH_SENDS_PER_THREAD if _small_batches(hook) else SENDS_PER_THREAD

    def start_watching(self, every: float = HOOK_WATCH_SEC) -> None:
        """Refresh the hook cache between tasks too, until close(): a changed or deleted hook's broker
        connection is closed within seconds (the cache retires its transport) even when no task comes,
        and the periodic full reload runs. Costs one indexed query per round. Each round also closes
        the transports' idle connections past their keep-alive (TransportCache.prune), so a hook that
        stops getting events keeps no socket open for more than a round after they expire."""
        self._watcher = threading.Thread(target=self._watch, args=(every,), name="actionhooks-hook-watch", daemon=True)
        self._watcher.start()

    def _watch(self, every: float) -> None:
        while not self._closed.wait(every):
            self.transports.prune()  # no database involved: also when the refresh below fails
            try:
                self.hooks.refresh()
                self._flush_counts()
            except Exception:
                log.warning("refreshing hooks failed; trying again in %.0f s", every, exc_info=True)

    def close(self) -> None:
        """Release everything this runtime opened; idempotent. Call when no task runs any more (a
        transport still sending is closed by its last user, see TransportCache)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join(30)  # a round is one read; it ends well within that
        self._flush_counts()
        self.transports.close_all()
        self.engine.dispose()


_runtimes: dict[int, Runtime] = {}
_runtimes_lock = threading.Lock()


def runtime_for(celery: Celery) -> Runtime:
    """This process's Runtime for `celery` (keyed by pid: a forked child never reuses its parent's).

    Thread-safe: on the threads pool, tasks starting together get the one Runtime (and one watcher)."""
    pid = os.getpid()
    rt = _runtimes.get(pid)
    if rt is not None:
        return rt
    with _runtimes_lock:  # building a Runtime opens no connection (all lazy), so the lock covers no I/O
        rt = _runtimes.get(pid)
        if rt is None:
            rt = _runtimes[pid] = Runtime(celery.actionhooks_settings, celery)  # type: ignore[attr-defined]
            tracing.configure()  # per process: a prefork child starts its own export thread
            rt.start_watching()
            quiet_gc()
    return rt


def close_runtime(**_: object) -> None:
    """Close this process's Runtime, if it has one, and the Celery app's producer connections it used
    to send triggers (a Celery signal receiver: worker_process_shutdown / worker_shutdown)."""
    with _runtimes_lock:
        rt = _runtimes.pop(os.getpid(), None)
    if rt is None:
        return
    try:
        rt.close()
    finally:
        close_celery(rt.celery)
        tracing.flush()  # a prefork child may leave without running atexit handlers
    log.info("worker process %s closed its connections", os.getpid())


def quiet_gc() -> None:
    """Keep the cyclic garbage collector off the event path.

    Routing and draining allocate tens of thousands of acyclic dicts per task (decoded events),
    which refcounting frees; but they trip collections that scan the whole heap of a worker
    (Celery, SQLAlchemy, compiled hooks), measured at 2.6 µs per event, 70% of decoding and
    re-encoding it. Freezing what exists after start-up takes it out of every scan; a larger
    first generation makes collections rarer. Cycles are still collected.
    """
    gc.freeze()
    gc.set_threshold(10_000, 50, 50)


def _small_batches(hook: CompiledHook) -> bool:
    """Whether the hook's batches hold at most SMALL_BATCH_EVENTS events (GET: one per request)."""
    return batch_limits(hook)[0] <= SMALL_BATCH_EVENTS
