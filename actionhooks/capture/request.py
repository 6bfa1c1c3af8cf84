"""From a public request to a captured event: the visitor, privacy, and the bounded parameters.

Every capture kind builds its events here, so the same parameter means the same thing in a pixel's
query string, a redirect link and a webhook object (README, "Capture"). A request
that breaks a bound raises Refused naming the reason (counted in /metrics) and the field; nothing
of it is captured.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request, cookie_parser

from actionhooks.capture.agents import is_bot, mail_proxy
from actionhooks.capture.model import Source

__all__ = ["MAX_PARAMS", "MAX_PARAM_NAME", "MAX_PARAM_VALUE", "Env", "Refused", "event_from_params", "request_env"]

MAX_PARAMS = 64  # kept in event_data.params
MAX_PARAM_NAME = 64
MAX_PARAM_VALUE = 2048
MAX_PROFILE_ID = 200  # profiles.profile_id column
MAX_HEADER_KEPT = 2048  # user agent and referer are kept up to this many characters
COOKIE_MAX_AGE = 2 * 365 * 86_400
ID_FIELDS = ("campaign_id", "message_id", "resource_id", "segment_id", "pixel_id", "link_id")
_MAX_ID = 2**63 - 1
# A visitor id we accept from a cookie: ours are 32 hex digits; Creatio's BpmTrackingId is a GUID.
_READ = frozenset({b"user-agent", b"referer", b"dnt", b"sec-gpc", b"cookie"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255 without leading zeros
_IPV4 = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}", re.ASCII)


class Refused(Exception):
    """A request that is not captured: `reason` is the /metrics label, `field` what broke the bound."""

    def __init__(self, reason: str, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.reason, self.field, self.msg = reason, field, msg


@dataclass(slots=True)
class Env:
    """What every event of one request shares: arrival, client facts after privacy rules, the visitor.

    Never changed once made (not `frozen`: a frozen dataclass's __init__ costs a pixel hit ~1 µs more)."""

    arrived_ns: int
    ip: str | None
    user_agent: str
    referer: str | None
    visitor_id: str | None
    set_cookie: str | None  # the Set-Cookie header value to answer with, None under Do Not Track
    returning: bool = False  # the visitor id came from the request's cookie (it may have identified)

    def headers(self) -> dict[str, str]:
        return {"set-cookie": self.set_cookie} if self.set_cookie else {}


def request_env(source: Source, request: Request) -> Env:
    """The request's client facts: DNT/Sec-GPC drop ip, cookie and visitor id; anonymize_ip masks the ip.

    Reads the ASGI scope directly (one pass over the raw headers, no URL object): this runs for every
    pixel hit.
    """
    scope = request.scope
    headers: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _READ and name not in headers:
            headers[name] = value.decode("latin-1")
    spec = source.spec
    quiet = spec.respect_do_not_track and (headers.get(b"dnt") == "1" or headers.get(b"sec-gpc") == "1")
    user_agent = headers.get(b"user-agent", "")[:MAX_HEADER_KEPT]
    referer = headers.get(b"referer", "")[:MAX_HEADER_KEPT] or None
    if quiet:
        return Env(time.time_ns(), None, user_agent, referer, None, None)
    client = scope.get("client")
    host = client[0] if client else None
    ip = anonymize(host) if host and spec.anonymize_ip else host
    visitor_id = cookie_parser(headers[b"cookie"]).get(spec.cookie_name, "") if b"cookie" in headers else ""
    returning = bool(_VISITOR_ID.match(visitor_id))
    if not returning:
        visitor_id = os.urandom(16).hex()
    site = "SameSite=None; Secure" if scope.get("scheme") == "https" else "SameSite=Lax"
    cookie = f"{spec.cookie_name}={visitor_id}; Max-Age={COOKIE_MAX_AGE}; Path=/; {site}; HttpOnly"
    return Env(time.time_ns(), ip, user_agent, referer, visitor_id, cookie, returning)


def anonymize(ip: str) -> str | None:
    """IPv4 without its last octet, IPv6 without its last 80 bits; None for what is not an address."""
    v4 = _IPV4.fullmatch(ip)
    if v4 is not None:
        return f"{v4[1]}.0"  # the common case, without ipaddress's cost
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def event_date(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, as the platform's own events carry."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{_second(seconds)}.{fraction:09d}Z"


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    """The date and time of one second (every hit of that second shares it: strftime costs ~2 µs)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def new_event_id() -> str:
    """A random (version 4) UUID as text, without building a uuid.UUID (a third of the cost)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_event(source: Source, env: Env, event_type: str, data: dict[str, Any], *,
              profile_id: str | None = None, list_id: int | None = None) -> dict[str, Any]:
    """A captured event of `source` with the request facts every event carries in event_data."""
    agent = env.user_agent
    event_data = {
        "pixel_id": source.id,
        **data,
        "ip": env.ip,
        "user_agent": agent,
        "referer": env.referer,
        "visitor_id": env.visitor_id,
        "is_bot": is_bot(agent),
        "proxy": mail_proxy(agent),
    }
    return {
        "event_id": new_event_id(),
        "event_type": event_type,
        "event_date": event_date(env.arrived_ns),
        "account_id": source.account_id,
        "list_id": source.spec.list_id if list_id is None else list_id,
        "profile_id": profile_id,
        "is_test": False,
        "event_data": event_data,
    }


def event_from_params(source: Source, env: Env, items: Iterable[tuple[str, Any]],
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One event from request parameters (README, "Capture"): reserved names map to event fields, the rest are
    kept as strings in event_data.params. Refused when a bound or a value is broken."""
    event_type = source.spec.event_types[0]
    profile_id: str | None = None
    list_id: int | None = None
    data: dict[str, Any] = dict(extra or {})
    params: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in items:
        if len(name) > MAX_PARAM_NAME:
            short = name[:MAX_PARAM_NAME]
            raise Refused("param_name_too_long", short, f"names are at most {MAX_PARAM_NAME} characters")
        if name in seen:
            raise Refused("duplicate_param", name, "given more than once")
        seen.add(name)
        if name == "event":
            event_type = text_param(name, value, 100)
            if event_type not in source.spec.event_types:
                allowed = source.spec.event_types
                raise Refused("event_not_allowed", name, f"must be one of the source's event_types {allowed}")
        elif name == "profile_id":
            profile_id = text_param(name, value, MAX_PROFILE_ID)
        elif name == "list_id":
            list_id = _id(name, value)
        elif name in ID_FIELDS:
            data[name] = _id(name, value)
        elif name == "send_message_id":
            data[name] = text_param(name, value, MAX_PROFILE_ID)
        else:
            if len(params) >= MAX_PARAMS:
                raise Refused("too_many_params", name, f"at most {MAX_PARAMS} parameters are kept")
            params[name] = value if isinstance(value, str) else orjson.dumps(value).decode()
            if len(params[name]) > MAX_PARAM_VALUE:
                raise Refused("param_value_too_long", name, f"values are at most {MAX_PARAM_VALUE} characters")
    data["params"] = params
    return new_event(source, env, event_type, data, profile_id=profile_id, list_id=list_id)


def text_param(name: str, value: Any, limit: int) -> str:
    """A non-empty string of at most `limit` characters without control characters (ids that reach
    SQL look-ups: PostgreSQL refuses NUL)."""
    if not isinstance(value, str) or not value or len(value) > limit or _CONTROL.search(value):
        raise Refused("bad_param", name, f"must be 1..{limit} characters without control characters")
    return value


def _id(name: str, value: Any) -> int:
    """An id from a query string ("973") or JSON (973): a non-negative integer that fits in BIGINT."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise Refused("bad_param", name, "must be a non-negative integer id")
    return value


def bounded_object(name: str, value: Any) -> dict[str, Any]:
    """A flat JSON object from a page (`props`, identify traits): at most MAX_PARAMS keys of at most
    MAX_PARAM_NAME characters, each a string of at most MAX_PARAM_VALUE, a number, a boolean or null."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused("bad_param", name, "must be a JSON object")
    if len(value) > MAX_PARAMS:
        raise Refused("too_many_params", name, f"at most {MAX_PARAMS} keys")
    for key, item in value.items():
        if len(key) > MAX_PARAM_NAME:
            raise Refused("param_name_too_long", name, f"key names are at most {MAX_PARAM_NAME} characters")
        if isinstance(item, str):
            if len(item) > MAX_PARAM_VALUE:
                raise Refused("param_value_too_long", f"{name}.{key}", f"at most {MAX_PARAM_VALUE} characters")
        elif item is not None and not isinstance(item, bool | int | float):
            raise Refused("bad_param", f"{name}.{key}", "must be a string, number, boolean or null")
    return value


def bounded_text(name: str, value: Any, limit: int = MAX_PARAM_VALUE) -> str | None:
    """An optional string field of a page's beacon, at most `limit` characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise Refused("param_value_too_long" if isinstance(value, str) else "bad_param", name,
                      f"must be a string of at most {limit} characters")
    return value
