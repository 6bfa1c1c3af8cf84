"""Thin Celery adapters around the plain functions in route.py and deliver.py.

acks_late + reject_on_worker_lost: a trigger whose worker died is delivered again. Our own attempt
counter (deliveries.attempts, incremented before sending) is what bounds retries, not Celery's.
"""

from __future__ import annotations

import signal
from types import FrameType

from celery import Celery
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
    worker_shutting_down,
)

from actionhooks.broker.celery_app import BACKFILL_TASK, DRAIN_TASK, ROUTE_TASK
from actionhooks.worker import shutdown
from actionhooks.worker.backfill import run_backfill
from actionhooks.worker.deliver import drain_hook
from actionhooks.worker.route import route_account
from actionhooks.worker.runtime import close_runtime, runtime_for


def register_tasks(celery: Celery) -> None:
    @celery.task(name=ROUTE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def route(account_id: int) -> int:
        return route_account(runtime_for(celery), account_id)

    @celery.task(name=DRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def drain(hook_id: int) -> int:
        return drain_hook(runtime_for(celery), hook_id)

    @celery.task(name=BACKFILL_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def backfill(job_id: int) -> int:
        return run_backfill(runtime_for(celery), job_id)

    worker_shutting_down.connect(lambda **_: shutdown.request(), weak=False)  # threads/solo pools
    worker_process_init.connect(_finish_the_task_on_sigterm, weak=False)  # prefork children
    # Every process that ran tasks closes what its Runtime opened: prefork children as they exit,
    # the main process (threads/solo pools) after its pool stopped.
    worker_process_shutdown.connect(close_runtime, weak=False)
    worker_shutdown.connect(close_runtime, weak=False)


_running = 0


def _finish_the_task_on_sigterm(**_: object) -> None:
    """In a prefork child: SIGTERM ends the task after its current round instead of killing it mid-send.

    Celery resets SIGTERM to its default in pool children, so a SIGTERM sent to the whole process
    group (systemd's default KillMode, `kill -TERM -<pgid>`) killed children in the middle of a
    delivery: batches the receiver had taken were never recorded and went out again after their
    lease (the fault test of a whole-engine SIGTERM counted 60-80 such duplicates of 1,000). Now a
    busy child finishes its round (worker/shutdown.py) and an idle one exits; the parent's warm
    shutdown (it got the same SIGTERM) closes the pool as usual. Until the first task SIGTERM is
    ignored: billiard replaces any other handler after this initializer, SIG_IGN is the one it keeps.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    task_prerun.connect(_started, weak=False)
    task_postrun.connect(_finished, weak=False)


def _started(**_: object) -> None:
    global _running
    _running += 1
    signal.signal(signal.SIGTERM, _on_sigterm)


def _finished(**_: object) -> None:
    global _running
    _running -= 1


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    shutdown.request()
    if not _running:
        raise SystemExit(0)
