"""What a worker process keeps between tasks: database engine, compiled hooks, transports, retry policy.

Created lazily on the first task of each process, so prefork children build their own engine and
connections after the fork (a connection inherited across fork is shared by two processes).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from actionhooks import tracing
from actionhooks.delivery import make_transport
from actionhooks.delivery.retry import RetryPolicy
from actionhooks.hooks.matching import CompiledHook
from actionhooks.settings import Settings
from actionhooks.storage.db import engine_from_settings, session_factory
from actionhooks.worker.hook_cache import HookCache
from actionhooks.worker.transports import TransportCache, TransportFactory
from actionhooks.worker.triggers import Triggers

HTTP_SEND_THREADS = 4
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
        self.triggers = Triggers(celery)
        self.transports = TransportCache(settings, transport_factory)
        self.hooks = HookCache(settings, on_change=self.transports.drop)
        self.policy = RetryPolicy.from_settings(settings)
        self._executor: ThreadPoolExecutor | None = None
        self._closed = threading.Event()

    def send_parallelism(self, hook: CompiledHook) -> int:
        """HTTP batches of one hook go out on a few threads sharing one keep-alive client; broker
        transports hold one channel/producer that pipelines internally, so they send one batch at a time."""
        return HTTP_SEND_THREADS if hook.delivery.type == "http" else 1

    def executor(self, threads: int) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="actionhooks-send")
        return self._executor

    def watch_hooks(self, every: float = HOOK_WATCH_SEC) -> None:
        """Refresh the hook cache between tasks too, until close(): a changed or deleted hook's broker
        connection is closed within seconds (the cache drops its transport) even when no task comes.
        Costs one indexed query per round."""
        while not self._closed.wait(every):
            try:
                with self.sessions() as session:
                    self.hooks.refresh(session)
            except Exception:
                log.warning("refreshing hooks failed; trying again in %.0f s", every, exc_info=True)

    def close(self) -> None:
        self._closed.set()
        self.transports.close_all()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.engine.dispose()


_runtimes: dict[int, Runtime] = {}


def runtime_for(celery: Celery) -> Runtime:
    """This process's Runtime for `celery` (keyed by pid: a forked child never reuses its parent's)."""
    pid = os.getpid()
    rt = _runtimes.get(pid)
    if rt is None:
        rt = _runtimes[pid] = Runtime(celery.actionhooks_settings, celery)  # type: ignore[attr-defined]
        tracing.configure()  # per process: a prefork child starts its own export thread
        threading.Thread(target=rt.watch_hooks, name="actionhooks-hook-watch", daemon=True).start()
        quiet_gc()
    return rt


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
