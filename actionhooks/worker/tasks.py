"""Thin Celery adapters around the plain functions in route.py and deliver.py.

acks_late + reject_on_worker_lost: a trigger whose worker died is delivered again. Our own attempt
counter (deliveries.attempts, incremented before sending) is what bounds retries, not Celery's.
"""

from __future__ import annotations

from celery import Celery

from actionhooks.worker.app import DRAIN_TASK, ROUTE_TASK
from actionhooks.worker.deliver import drain_hook
from actionhooks.worker.route import route_account
from actionhooks.worker.runtime import runtime_for


def register_tasks(celery: Celery) -> None:
    @celery.task(name=ROUTE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def route(account_id: int) -> int:
        return route_account(runtime_for(celery), account_id)

    @celery.task(name=DRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def drain(hook_id: int) -> int:
        return drain_hook(runtime_for(celery), hook_id)
