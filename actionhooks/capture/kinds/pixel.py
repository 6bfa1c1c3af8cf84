"""Pixel: `GET /t/{key}/p.gif?…` always answers a 1x1 transparent GIF that is never cached.

A mail client must never show a broken image, so an unknown key, a stopped source or bad parameters
get the same image; only the counter `actionhooks_capture_refused{kind="pixel",reason=…}` tells.
A HEAD (link checkers, some proxies) gets the image's headers and captures nothing.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl

from starlette.responses import Response

from actionhooks.capture.kinds.base import Call
from actionhooks.capture.request import MAX_PARAMS, Refused, event_from_params, request_env

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_HEADERS = {"cache-control": "no-store, no-cache, max-age=0", "pragma": "no-cache", "expires": "0"}
MAX_FIELDS = MAX_PARAMS + 16  # the kept parameters plus the reserved names


def query_items(call: Call) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, decoded strictly as UTF-8; Refused when malformed or too many."""
    raw = call.request.scope.get("query_string", b"")
    if not raw.isascii():
        raise Refused("bad_query", "query", "the query string must be percent-encoded ASCII")
    try:
        return parse_qsl(raw.decode("ascii"), keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except UnicodeDecodeError:
        raise Refused("bad_query", "query", "a parameter is not valid UTF-8") from None
    except ValueError:
        raise Refused("too_many_params", "query", f"at most {MAX_PARAMS} parameters are kept") from None


class Pixel:
    name = "pixel"
    endpoints = {"p.gif": frozenset({"GET", "HEAD"})}

    async def answer(self, call: Call) -> Response:
        headers = dict(_HEADERS)
        source = call.source
        if source is None:
            call.refuse(self.name, "unknown_source")
        elif not source.spec.active:
            call.refuse(self.name, "inactive")
        elif call.request.method == "GET":
            env = request_env(source, call.request)
            headers.update(env.headers())
            try:
                event = event_from_params(source, env, query_items(call))
            except Refused as refused:
                call.refuse(self.name, refused.reason)
            else:
                await call.capture(self.name, env, [event])
        return Response(GIF, 200, headers=headers, media_type="image/gif")


KIND = Pixel()
