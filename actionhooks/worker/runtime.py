"""What a worker process keeps between tasks: database engine, compiled hooks, transports, retry policy.

Created lazily on the first task of each process, so prefork children build their own engine and
connections after the fork (a connection inherited across fork is shared by two processes).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.delivery.retry import RetryPolicy
from actionhooks.hooks.matching import CompiledHook
from actionhooks.settings import Settings
from actionhooks.storage.db import engine_from_settings, session_factory
from actionhooks.worker.hook_cache import HookCache
from actionhooks.worker.transports import TransportCache
from actionhooks.worker.triggers import Triggers

HTTP_SEND_THREADS = 4


class Runtime:
    def __init__(self, settings: Settings, celery: Celery, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or engine_from_settings(settings)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.triggers = Triggers(celery)
        self.transports = TransportCache(settings)
        self.hooks = HookCache(settings, on_change=self.transports.drop)
        self.policy = RetryPolicy.from_settings(settings)
        self._executor: ThreadPoolExecutor | None = None

    def send_parallelism(self, hook: CompiledHook) -> int:
        """HTTP batches of one hook go out on a few threads sharing one keep-alive client; broker
        transports hold one channel/producer that pipelines internally, so they send one batch at a time."""
        return HTTP_SEND_THREADS if hook.delivery.type == "http" else 1

    def executor(self, threads: int) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="actionhooks-send")
        return self._executor

    def close(self) -> None:
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
    return rt
