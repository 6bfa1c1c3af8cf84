"""Site: the tracking script (`GET /t/{key}/s.js`) and its beacons (`POST /t/{key}/collect`).

The script is a static package file (capture/static/s.js), cacheable: it finds its collect URL from
its own `src`. Beacons are JSON in a text/plain body (navigator.sendBeacon sends no preflight for
that type); CORS headers, credentials included (the visitor cookie), are given only to an origin in
the source's `allowed_origins`; any other origin gets 403 and nothing is captured. A preflight
(OPTIONS) is answered the same way, for clients that send one.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import orjson
from starlette.responses import Response

from actionhooks.api.body import TooLarge, read_body
from actionhooks.capture.kinds.base import Call, problem, refused_problem
from actionhooks.capture.model import Source
from actionhooks.capture.request import (
    MAX_PROFILE_ID,
    Env,
    Refused,
    bounded_object,
    bounded_text,
    new_event,
    request_env,
    text_param,
)
from actionhooks.storage.sources import Identity

SCRIPT = files("actionhooks.capture").joinpath("static/s.js").read_bytes()
MAX_BEACON_BYTES = 16 * 1024
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_SCRIPT_HEADERS = {"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"}


class Site:
    name = "site"
    endpoints = {"s.js": frozenset({"GET", "HEAD"}), "collect": frozenset({"POST", "OPTIONS"})}

    async def answer(self, call: Call) -> Response:
        source = call.source
        if call.endpoint == "s.js":
            if source is None:
                return Response(b"/* unknown source */\n", 404, media_type="application/javascript")
            return Response(SCRIPT, 200, headers=_SCRIPT_HEADERS, media_type="application/javascript")
        origin = call.request.headers.get("origin", "")
        if source is None or not source.spec.active:
            call.refuse(self.name, "unknown_source" if source is None else "inactive")
            return problem(404, ["path", "key"], "no active site source has this key", "not_found")
        if origin.lower() not in source.spec.allowed_origins:
            call.refuse(self.name, "origin")
            return problem(403, ["header", "origin"], "this origin is not in the source's allowed_origins",
                           "forbidden")
        cors = {
            "access-control-allow-origin": origin,
            "access-control-allow-credentials": "true",
            "vary": "Origin",
        }
        if call.request.method == "OPTIONS":
            cors |= {"access-control-allow-methods": "POST", "access-control-allow-headers": "content-type",
                     "access-control-max-age": "600"}
            return Response(None, 204, headers=cors)
        return await self._collect(call, source, cors)

    async def _collect(self, call: Call, source: Source, cors: dict[str, str]) -> Response:
        try:
            body = await read_body(call.request, MAX_BEACON_BYTES)
        except TooLarge:
            call.refuse(self.name, "too_large")
            return problem(413, ["body"], f"a beacon is at most {MAX_BEACON_BYTES} bytes", "too_large", cors)
        env = request_env(source, call.request)
        cors |= env.headers()
        try:
            beacon = orjson.loads(body)
        except orjson.JSONDecodeError:
            call.refuse(self.name, "bad_body")
            return problem(422, ["body"], "must be a JSON object", "body_invalid", cors)
        try:
            event, identities = beacon_event(source, env, beacon)
        except Refused as refused:
            call.refuse(self.name, refused.reason)
            return refused_problem(refused, ["body"], cors)
        if not await call.capture(self.name, env, [event], identities):
            return problem(503, [], "not stored; try again", "unavailable", cors)
        return Response(None, 204, headers=cors)


def beacon_event(source: Source, env: Env, beacon: Any) -> tuple[dict[str, Any], dict[str, Identity]]:
    """The event of one beacon from s.js, and the identity it teaches (identify with a visitor id)."""
    if not isinstance(beacon, dict):
        raise Refused("bad_body", "type", "a beacon is a JSON object with a type")
    kind = beacon.get("type")
    if kind not in ("page_view", "site_event", "identify"):
        raise Refused("bad_param", "type", "must be page_view, site_event or identify")
    if kind not in source.spec.event_types:
        raise Refused("event_not_allowed", "type", f"must be one of the source's event_types {source.spec.event_types}")
    data: dict[str, Any] = {
        "url": bounded_text("url", beacon.get("url")),
        "title": bounded_text("title", beacon.get("title")),
        "referrer": bounded_text("referrer", beacon.get("referrer")),
    }
    if kind == "page_view":
        utm = bounded_object("utm", beacon.get("utm"))
        data["utm"] = {name: bounded_text(f"utm.{name}", utm.get(name)) for name in UTM_FIELDS if utm.get(name)}
        return new_event(source, env, kind, data), {}
    if kind == "site_event":
        data["name"] = text_param("name", beacon.get("name"), 200)
        data["props"] = bounded_object("props", beacon.get("props"))
        return new_event(source, env, kind, data), {}
    traits = dict(bounded_object("traits", beacon.get("traits")))
    profile_id = text_param("traits.profile_id", traits.pop("profile_id", None), MAX_PROFILE_ID)
    data["traits"] = traits
    event = new_event(source, env, kind, data, profile_id=profile_id)
    identities = {env.visitor_id: (profile_id, source.spec.list_id)} if env.visitor_id else {}
    return event, identities


KIND = Site()
