"""What the pipeline's routes share: bounded body reading, the trigger sender, loading one compiled hook."""

from __future__ import annotations

import threading

from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import State

from actionhooks.broker.celery_app import close_celery, make_celery
from actionhooks.broker.triggers import Triggers
from actionhooks.errors import NotFound
from actionhooks.hooks.matching import CompiledHook, compile_hook
from actionhooks.storage.tables import Hook
from actionhooks.worker.hook_cache import hook_row


async def read_bounded_body(request: Request, limit: int) -> bytes:
    """The JSON body, refused with 413 past `limit` bytes (before reading it when Content-Length says so)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
        raise HTTPException(
            415, detail=[{"loc": ["header", "content-type"], "msg": "must be application/json", "type": "content_type"}]
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        413, detail=[{"loc": ["body"], "msg": f"request body larger than {limit} bytes", "type": "too_large"}]
    )


_triggers_lock = threading.Lock()


def triggers_of(request: Request) -> Triggers:
    """The app's trigger sender, created on first use so an API that only serves reads needs no broker."""
    return app_triggers(request.app.state)


def app_triggers(state: State) -> Triggers:
    """triggers_of for code that has the app's state but no request (the capture committer). Made once,
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


def load_hook(session: Session, request: Request, account_id: int, hook_id: int) -> CompiledHook:
    """The account's hook, compiled; NotFound (404) for a missing hook or another account's."""
    row = session.scalar(select(Hook).where(Hook.id == hook_id, Hook.account_id == account_id))
    if row is None:
        raise NotFound("hook", hook_id)
    return compile_hook(hook_row(row), request.app.state.settings)
