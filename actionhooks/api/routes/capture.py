"""The public capture endpoints, /t/{key}/{endpoint}: no token, the key names the source.

This is the path strangers hit at the peaks of a mass send, so it is answered before FastAPI's own
stack is entered (api/app.py `App.__call__`: no middleware, no route table scan, no dependency
injection, no response models): it splits the path,
finds the source by key in a cache, and hands the request to the kind that owns the endpoint
(capture/kinds/). Every other path goes on to the FastAPI application unchanged.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from actionhooks.capture.context import CaptureContext
from actionhooks.capture.kinds import ENDPOINT_KINDS
from actionhooks.capture.kinds.base import Call

PREFIX = "/t/"


async def serve(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one /t/… request of `app` (its state holds the capture context). One coroutine from here
    to the kind's answer: every level of awaiting is resumed again when a pixel's commit completes."""
    parts = scope["path"][len(PREFIX):].split("/")
    kind = ENDPOINT_KINDS.get(parts[1]) if len(parts) == 2 else None
    response: ASGIApp
    if kind is None:
        response = PlainTextResponse("Not found.\n", 404)
    elif scope["method"] not in (methods := kind.endpoints[parts[1]]):
        response = PlainTextResponse("Method not allowed.\n", 405, headers={"allow": ", ".join(sorted(methods))})
    else:
        scope["app"] = app
        ctx: CaptureContext = app.state.capture  # type: ignore[attr-defined]
        source = await ctx.sources.find(parts[0])
        if source is not None and source.spec.kind != kind.name:
            source = None
        response = await kind.answer(Call(ctx, Request(scope, receive), source, parts[1]))
    await response(scope, receive, send)
