"""One error shape for every 4xx: `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.

It is FastAPI's validation shape, so a client handles schema errors, rule errors (HookValidationError),
missing objects (NotFound), auth and unknown routes the same way. The rejected input is never echoed
back: it may hold a password or token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from actionhooks.errors import HookValidationError, NotFound
from actionhooks.hooks.models import HookSpec
from actionhooks.storage.committer import Busy, ShuttingDown
from actionhooks.storage.db import UNAVAILABLE, cannot_write

__all__ = ["error_body", "install_error_handlers"]

# Which path parameter names each kind of NotFound (NotFound.kind -> loc).
_NOT_FOUND_LOC = {"hook": ["path", "id"], "profile": ["path", "profile_id"]}


def error_body(errors: Sequence[tuple[Sequence[str | int], str, str]]) -> dict[str, Any]:
    return {"detail": [{"loc": list(loc), "msg": msg, "type": kind} for loc, msg, kind in errors]}


async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [(err["loc"], _message(err), err["type"]) for err in exc.errors()]
    _count_hook_rejection(request, [err["loc"] for err in exc.errors()])
    return JSONResponse(error_body(errors), status_code=422)


def _message(err: dict[str, Any]) -> str:
    if err["type"] == "json_invalid":
        return f"request body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}"
    return str(err["msg"])


async def _hook_validation(request: Request, exc: HookValidationError) -> JSONResponse:
    _count_hook_rejection(request, [loc for loc, _msg in exc.errors])
    return JSONResponse(error_body([(loc, msg, "value_error") for loc, msg in exc.errors]), status_code=422)


# Parts of a hook that get their own label in actionhooks_hook_rejected_requests (bounded label values).
_HOOK_FIELDS = frozenset(HookSpec.model_fields)
_HOOK_SUBFIELDS = frozenset({("filters", "match"), ("delivery", "auth")})
_HOOK_ROUTES = "actionhooks.api.routes.hooks"


def _count_hook_rejection(request: Request, locs: Sequence[Sequence[str | int]]) -> None:
    """Count a refused hook save once, by the field of its first error."""
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if getattr(endpoint, "__module__", None) != _HOOK_ROUTES or request.method not in ("POST", "PUT", "PATCH"):
        return
    counter = getattr(request.app.state, "hook_rejections", None)
    if counter is None or not locs:
        return
    loc = [part for part in locs[0] if part != "body"]
    field = str(loc[0]) if loc and loc[0] in _HOOK_FIELDS else "other"
    if tuple(loc[:2]) in _HOOK_SUBFIELDS:
        field = f"{loc[0]}.{loc[1]}"
    counter.labels(field=field).inc()


async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
    loc = _NOT_FOUND_LOC.get(exc.kind, ["path", "id"])
    return JSONResponse(error_body([(loc, str(exc), "not_found")]), status_code=404)


async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
    if isinstance(exc.detail, list):
        detail = exc.detail
    elif exc.status_code == 400:
        # FastAPI's only plain 400: a JSON body it could not decode (invalid UTF-8); name the body.
        msg = f"request body is not valid JSON: {exc.__cause__}" if exc.__cause__ else str(exc.detail)
        detail = error_body([(["body"], msg, "body_invalid")])["detail"]
    else:
        detail = error_body([([], str(exc.detail), "http_error")])["detail"]
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


# Seconds a client is asked to wait when the database is failing or overloaded.
RETRY_AFTER_SEC = 5


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 + Retry-After, answered by our handler so the connection stays usable (an unhandled error
    makes uvicorn close it after its 500, and a keep-alive client then loses its next request too).
    The request's transaction was rolled back when its session closed: nothing of it is stored."""
    reason = cannot_write(exc)
    if reason is not None:
        request.app.state.write_health.failed(reason)
    msg = f"database unavailable ({'cannot write: ' + reason if reason else type(exc).__name__}); retry later"
    return _retry_later(msg, "unavailable")


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    """503 + Retry-After for a request the group commit refused at once: too many requests (or too
    many of this account's) already wait for the database. Counted in /metrics."""
    request.app.state.overloaded.inc()
    return _retry_later(f"{exc}; retry later", "overloaded")


async def _shutting_down(_request: Request, exc: Exception) -> JSONResponse:
    """503 + Retry-After for a request that arrived while the group commit closes (API shutdown):
    nothing of it is stored; sent again, it reaches another API process or this one restarted."""
    return _retry_later(f"{exc}; nothing was stored, retry later", "shutting_down")


def _retry_later(msg: str, kind: str) -> JSONResponse:
    """The 503 of a request the API could not store now, with the Retry-After its client waits for."""
    return JSONResponse(error_body([([], msg, kind)]), status_code=503, headers={"Retry-After": str(RETRY_AFTER_SEC)})


def install_error_handlers(app: FastAPI) -> None:
    for error in UNAVAILABLE:
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(Busy, _overloaded)
    app.add_exception_handler(ShuttingDown, _shutting_down)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(HookValidationError, _hook_validation)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(HTTPException, _http)
