"""The API's trigger sender (broker/triggers.py): one per app, made on first use, closed at shutdown.

Made lazily so an API that only serves reads needs no broker; routes reach it through the request,
the group committer through the app's state.
"""

from __future__ import annotations

import threading

from fastapi import Request
from starlette.datastructures import State

from actionhooks.broker.celery_app import close_celery, make_celery
from actionhooks.broker.triggers import Triggers

__all__ = ["app_triggers", "close_triggers", "triggers_of"]

_triggers_lock = threading.Lock()


def triggers_of(request: Request) -> Triggers:
    """The app's trigger sender, created on first use so an API that only serves reads needs no broker."""
    return app_triggers(request.app.state)


def app_triggers(state: State) -> Triggers:
    """triggers_of for code that has the app's state but no request (the group committer). Made once,
    also when sync routes ask from several threads (making it opens no connection)."""
    if getattr(state, "triggers", None) is None:
        with _triggers_lock:
            if getattr(state, "triggers", None) is None:
                state.triggers = Triggers(make_celery(state.settings))
    triggers: Triggers = state.triggers
    return triggers


def close_triggers(state: object) -> None:
    """On API shutdown: close the broker connections the trigger sender opened, if it was created."""
    triggers: Triggers | None = getattr(state, "triggers", None)
    if triggers is not None:
        close_celery(triggers.celery)
