"""The public capture endpoints, /t/{key}/{endpoint}: no token, the key names the source.

A plain Starlette router (no dependency injection, no response models): this is the path strangers
hit at the peaks of a mass send, so it does a dict look-up for the source, hands the request to the
kind that owns the endpoint (capture/kinds/), and nothing else.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router

from actionhooks.capture.context import CaptureContext
from actionhooks.capture.kinds import ENDPOINT_KINDS
from actionhooks.capture.kinds.base import Call

PREFIX = "/t"


async def dispatch(request: Request) -> Response:
    kind = ENDPOINT_KINDS.get(request.path_params["endpoint"])
    if kind is None:
        return PlainTextResponse("Not found.\n", 404)
    endpoint = request.path_params["endpoint"]
    if request.method not in kind.endpoints[endpoint]:
        return PlainTextResponse("Method not allowed.\n", 405, headers={"allow": ", ".join(kind.endpoints[endpoint])})
    ctx: CaptureContext = request.app.state.capture
    key = request.path_params["key"]
    found, source = ctx.sources.cached(key)
    if not found:
        source = await run_in_threadpool(ctx.sources.get, key)
    if source is not None and source.spec.kind != kind.name:
        source = None
    return await kind.answer(Call(ctx, request, source, endpoint))


router = Router(routes=[Route("/{key}/{endpoint}", dispatch, methods=["GET", "HEAD", "POST", "OPTIONS"])])
