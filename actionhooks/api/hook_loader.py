"""One of the account's hooks, compiled as the workers run it, for the endpoints that act on a hook
(test sending, the failed list and its replay)."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from actionhooks.errors import NotFound
from actionhooks.hooks.matching import CompiledHook, compile_hook
from actionhooks.storage.hooks import hook_row
from actionhooks.storage.tables import Hook

__all__ = ["load_hook"]


def load_hook(session: Session, request: Request, account_id: int, hook_id: int) -> CompiledHook:
    """The account's hook, compiled; NotFound (404) for a missing hook or another account's."""
    row = session.scalar(select(Hook).where(Hook.id == hook_id, Hook.account_id == account_id))
    if row is None:
        raise NotFound("hook", hook_id)
    return compile_hook(hook_row(row), request.app.state.settings)
