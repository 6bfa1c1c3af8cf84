"""Stopping a worker gracefully: attempts in flight finish and are recorded, nothing new is claimed.

Set on SIGTERM (worker/tasks.py wires it: Celery's warm shutdown in the worker's main process, a
SIGTERM handler in prefork children). The drain and route loops check it between rounds, so a stop
takes at most one round (one attempt, bounded by HOOK_HTTP_TIMEOUT_SEC) instead of a whole task
budget; what is left is in the database and the next worker continues it.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    _requested.set()


def requested() -> bool:
    return _requested.is_set()
