"""Request bodies read within a limit: POST /events and the public capture endpoints.

A body is hostile until bounded: the limit is checked against Content-Length before anything is
read, and again while the chunks arrive (a client may send no length, or lie about it), so a body
past the limit is never held in memory whole.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.requests import Request

__all__ = ["TooLarge", "read_body", "read_json_body"]


class TooLarge(Exception):
    """The body is longer than the limit the caller gave."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or TooLarge past `limit` bytes (before reading when Content-Length says so)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_body(request: Request, limit: int) -> bytes:
    """The JSON body of an API request: 415 for another content type, 413 past `limit` bytes."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
        raise HTTPException(
            415, detail=[{"loc": ["header", "content-type"], "msg": "must be application/json", "type": "content_type"}]
        )
    try:
        return await read_body(request, limit)
    except TooLarge:
        raise HTTPException(
            413, detail=[{"loc": ["body"], "msg": f"request body larger than {limit} bytes", "type": "too_large"}]
        ) from None
