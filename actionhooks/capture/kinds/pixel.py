"""Pixel: `GET /t/{key}/p.gif?…` always answers a 1x1 transparent GIF that is never cached.

A mail client must never show a broken image, so an unknown key, a stopped source or bad parameters
get the same image; only the counter `actionhooks_capture_refused{kind="pixel",reason=…}` tells.
A HEAD (link checkers, some proxies) gets the image's headers and captures nothing.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from actionhooks.capture.kinds.base import Call
from actionhooks.capture.request import MAX_PARAMS, Refused, event_from_params, request_env

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_HEADERS = [(b"content-type", b"image/gif"), (b"content-length", b"%d" % len(GIF)),
            (b"cache-control", b"no-store, no-cache, max-age=0"), (b"pragma", b"no-cache"), (b"expires", b"0")]
MAX_FIELDS = MAX_PARAMS + 16  # the kept parameters plus the reserved names


def query_items(call: Call) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, decoded strictly as UTF-8; Refused when malformed or too many.

    What `parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")` returns,
    without its generic overhead (a third of its cost on a pixel's query): names and values without
    `%` or `+` are taken as they are.
    """
    raw = call.request.scope.get("query_string", b"")
    if not raw:
        return []
    if not raw.isascii():
        raise Refused("bad_query", "query", "the query string must be percent-encoded ASCII")
    if raw.count(b"&") >= MAX_FIELDS:
        raise Refused("too_many_params", "query", f"at most {MAX_PARAMS} parameters are kept")
    items = []
    for part in raw.decode("ascii").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            try:
                name = unquote(name.replace("+", " "), errors="strict")
                value = unquote(value.replace("+", " "), errors="strict")
            except UnicodeDecodeError:
                raise Refused("bad_query", "query", "a parameter is not valid UTF-8") from None
        items.append((name, value))
    return items


class Pixel:
    name = "pixel"
    endpoints = {"p.gif": frozenset({"GET", "HEAD"})}

    async def answer(self, call: Call) -> ASGIApp:
        source = call.source
        cookie = None
        if source is None:
            call.refuse(self.name, "unknown_source")
        elif not source.spec.active:
            call.refuse(self.name, "inactive")
        elif call.request.method == "GET":
            env = request_env(source, call.request)
            cookie = env.set_cookie
            try:
                event = event_from_params(source, env, query_items(call))
            except Refused as refused:
                call.refuse(self.name, refused.reason)
            else:
                await call.capture(self.name, env, [event])
        return _Gif(cookie)


class _Gif:
    """The pixel's answer as two prebuilt ASGI messages (a Starlette Response builds and encodes its
    header list on every hit), plus the visitor cookie when there is one."""

    __slots__ = ("headers",)

    def __init__(self, cookie: str | None) -> None:
        self.headers = _HEADERS if cookie is None else [*_HEADERS, (b"set-cookie", cookie.encode("latin-1"))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": GIF})


KIND = Pixel()
