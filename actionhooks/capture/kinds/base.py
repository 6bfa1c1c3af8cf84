"""The one interface of a capture kind, and what every kind's answers share.

A kind owns some of the public endpoints under /t/{key}/ and answers them; the router
(api/routes/capture.py) finds the kind by endpoint, the source by key, and calls `answer`. A source
of another kind, an unknown key and a deleted source all reach `answer` as `source=None`: each kind
decides what a stranger gets then (the pixel still answers its image).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from actionhooks.capture.context import CaptureContext
from actionhooks.capture.model import Source
from actionhooks.capture.request import Env, Refused
from actionhooks.storage.committer import Busy, ShuttingDown
from actionhooks.storage.sources import Identity

__all__ = ["Call", "CaptureKind", "NoSource", "problem"]


class NoSource(RuntimeError):
    """A kind asked to capture the events of a request with no source (`Call.source` None): a bug in
    the kind, which must answer strangers without capturing. A typed error rather than an assert
    (gone under `python -O`, where the bug would pass for a database failure: `store_failed`)."""


@dataclass(slots=True)
class Call:
    """One public request: the shared context, the request, and its source (None: not one of this kind)."""

    ctx: CaptureContext
    request: Request
    source: Source | None
    endpoint: str

    def refuse(self, kind: str, reason: str) -> None:
        """Count why this request (or part of it) is not captured."""
        self.ctx.metrics.count_refused(kind, reason)

    async def capture(self, kind: str, env: Env, events: list[dict[str, Any]],
                      identities: dict[str, Identity] | None = None, *, supplied_ids: bool = False) -> bool:
        """Make `events` durable (group commit); False, counted, when the database refused.

        Only a visitor id that came from the request's cookie can have identified before, so only
        then does the committer look it up (a mass send's first opens cost no identity query).
        """
        if self.source is None:
            raise NoSource(f"{kind}: capture() called for a request that has no source of this kind")
        returning = frozenset({env.visitor_id}) if env.returning and env.visitor_id else frozenset()
        try:
            await self.ctx.committer.submit(
                self.source.account_id, events, identities=identities, returning=returning, source_id=self.source.id,
                supplied_ids=[event["event_id"] for event in events] if supplied_ids else None)
        except Busy:
            self.refuse(kind, "overloaded")
            return False
        except ShuttingDown:
            self.refuse(kind, "shutting_down")
            return False
        except Exception:
            self.refuse(kind, "store_failed")
            return False
        self.ctx.metrics.count_captured(kind, len(events))
        return True


class CaptureKind(Protocol):
    """A capture kind: its name (SourceSpec.kind), its endpoints with their methods, and their answers."""

    name: str
    endpoints: Mapping[str, frozenset[str]]

    async def answer(self, call: Call) -> ASGIApp:
        """The answer to send: a Starlette Response, or any ASGI callable (the pixel's prebuilt one)."""
        ...


def problem(status: int, loc: list[Any], msg: str, kind: str, headers: Mapping[str, str] | None = None) -> Response:
    """The API's error shape ({"detail": [{loc, msg, type}]}) for a public endpoint."""
    body = orjson.dumps({"detail": [{"loc": loc, "msg": msg, "type": kind}]})
    return Response(body, status, headers=dict(headers or {}), media_type="application/json")


def refused_problem(refused: Refused, loc_prefix: list[Any], headers: Mapping[str, str] | None = None) -> Response:
    return problem(422, [*loc_prefix, refused.field], refused.msg, refused.reason, headers)
