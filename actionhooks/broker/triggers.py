"""Sending triggers to the workers by task name, so senders (API, scheduler) never import task code."""

from __future__ import annotations

import logging

from celery import Celery

from actionhooks.broker.celery_app import BACKFILL_TASK, DRAIN_TASK, ROUTE_TASK

log = logging.getLogger(__name__)

# A trigger due later than this is not sent at all: the scheduler finds the work when it is due.
# Long countdowns would sit in the broker as ETA tasks, which Redis redelivers after its
# visibility timeout and which a worker holds in memory meanwhile.
MAX_COUNTDOWN_SEC = 60.0


class Triggers:
    """Fire-and-forget triggers: a failure to send is logged, never raised — the scheduler resends."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def route(self, account_id: int, countdown: float | None = None) -> None:
        self._send(ROUTE_TASK, account_id, countdown)

    def drain(self, hook_id: int, countdown: float | None = None) -> None:
        if countdown is not None and countdown > MAX_COUNTDOWN_SEC:
            return
        self._send(DRAIN_TASK, hook_id, countdown)

    def backfill(self, job_id: int, countdown: float | None = None) -> None:
        self._send(BACKFILL_TASK, job_id, countdown)

    def _send(self, name: str, arg: int, countdown: float | None = None) -> None:
        try:
            self.celery.send_task(name, args=[arg], countdown=countdown)
        except Exception:  # any broker failure: the work stays in the database
            log.warning("could not send %s(%s); the scheduler will retry", name, arg, exc_info=True)
