"""Webhook: `POST /t/{key}/wh` with a JSON object or an array of objects → one event per object.

Authenticated per the source's `auth` (none, basic, Standard Webhooks), then the whole request is
validated (every object; 422 naming `[index, field]`) before anything is stored, and 202 is answered
only once the events are durable, as POST /events does. A `webhook-id` header (Standard Webhooks
senders send one, stable across their retries) makes the event ids `{webhook-id}.{index}`, so a
retried message within EVENT_DEDUP_HOURS is not captured twice.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

from actionhooks.api.body import TooLarge, read_body
from actionhooks.capture.kinds.base import Call, problem
from actionhooks.capture.model import BasicAuth, Source, StandardWebhooksAuth
from actionhooks.capture.request import Refused, event_from_params, request_env
from actionhooks.delivery.http1 import basic_authorization
from actionhooks.delivery.signing import sign

_MSG_ID = re.compile(r"^[\x21-\x7e]{1,90}$")  # webhook-id: printable ASCII, room for ".index" in 100
TOLERANCE_SEC = 300  # Standard Webhooks: a timestamp further than this from now is refused (replays)


class Webhook:
    name = "webhook"
    endpoints = {"wh": frozenset({"POST"})}

    async def answer(self, call: Call) -> Response:
        source = call.source
        if source is None or not source.spec.active:
            call.refuse(self.name, "unknown_source" if source is None else "inactive")
            return problem(404, ["path", "key"], "no active webhook source has this key", "not_found")
        ctx = call.ctx
        try:
            body = await read_body(call.request, ctx.max_body_bytes)
        except TooLarge:
            call.refuse(self.name, "too_large")
            return problem(413, ["body"], f"request body larger than {ctx.max_body_bytes} bytes", "too_large")
        denied = _authenticate(source, call, body)
        if denied is not None:
            call.refuse(self.name, "unauthorized")
            return denied
        content_type = call.request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/json", ""):
            call.refuse(self.name, "content_type")
            return problem(415, ["header", "content-type"], "must be application/json", "content_type")
        objects, error = _objects(body, ctx.max_events_per_request)
        if error is not None:
            call.refuse(self.name, "bad_body")
            return problem(422, ["body"], error, "body_invalid")
        env = request_env(source, call.request)
        events, errors = [], []
        for index, obj in enumerate(objects):
            try:
                events.append(event_from_params(source, env, obj.items()))
            except Refused as refused:
                call.refuse(self.name, refused.reason)
                errors.append({"loc": [index, refused.field], "msg": refused.msg, "type": refused.reason})
        if errors:
            return JSONResponse({"detail": errors}, 422)
        msg_id = call.request.headers.get("webhook-id", "")
        supplied = bool(_MSG_ID.match(msg_id))
        if supplied:  # a sender's retry of the same message is not captured twice
            for index, event in enumerate(events):
                event["event_id"] = f"{msg_id}.{index}"
        if not await call.capture(self.name, env, events, supplied_ids=supplied):
            return problem(503, [], "the events could not be stored; send them again", "unavailable",
                           {"retry-after": "5"})
        return JSONResponse({"accepted": len(events), "ids": [e["event_id"] for e in events]}, 202,
                            headers=env.headers())


def _objects(body: bytes, max_objects: int) -> tuple[list[dict[str, Any]], str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return [], f"invalid JSON: {exc}"
    objects = [data] if isinstance(data, dict) else data
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        return [], "must be a JSON object or an array of JSON objects"
    if not objects:
        return [], "the array is empty"
    if len(objects) > max_objects:
        return [], f"too many objects: {len(objects)} > {max_objects} per request"
    return objects, None


def _authenticate(source: Source, call: Call, body: bytes) -> Response | None:
    """None when the request carries what the source's auth asks for; else the 401 to answer."""
    auth = source.spec.auth
    headers = call.request.headers
    if isinstance(auth, BasicAuth):
        given = headers.get("authorization", "")
        expected = basic_authorization(auth.username, auth.password)
        if hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            return None
        return problem(401, ["header", "Authorization"], "missing or wrong basic credentials", "unauthorized",
                       {"www-authenticate": 'Basic realm="actionhooks"'})
    if isinstance(auth, StandardWebhooksAuth):
        reason = _standard_webhooks(auth.secret, headers.get("webhook-id", ""),
                                    headers.get("webhook-timestamp", ""), headers.get("webhook-signature", ""), body)
        if reason is None:
            return None
        return problem(401, ["header", "webhook-signature"], reason, "unauthorized")
    return None


def _standard_webhooks(secret: str, msg_id: str, timestamp: str, signatures: str, body: bytes) -> str | None:
    """Why the Standard Webhooks headers do not verify `body`, or None when one signature matches."""
    if not msg_id or not timestamp.isdigit() or not signatures:
        return "webhook-id, webhook-timestamp and webhook-signature headers are required"
    if abs(time.time() - int(timestamp)) > TOLERANCE_SEC:
        return f"webhook-timestamp is more than {TOLERANCE_SEC} s away from now"
    expected = sign(secret, msg_id, int(timestamp), body).encode()
    if any(hmac.compare_digest(candidate.encode(), expected) for candidate in signatures.split()):
        return None
    return "no webhook-signature matches the body"


KIND = Webhook()
