"""POST /events: validate the whole request, store it durably in one transaction, answer 202.

The API does no matching or rendering: it validates, stores one intake row per request and, when
the account had no routing pending, sends one trigger. That keeps a request's cost independent of
the number of hooks and keeps the API responsive while workers are busy.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from actionhooks import tracing
from actionhooks.api.auth import Principal, any_principal
from actionhooks.api.body import read_json_body
from actionhooks.api.triggers import triggers_of
from actionhooks.errors import EventsRejected, HookValidationError
from actionhooks.events import example_event, parse_events
from actionhooks.storage.intake import accept_events

router = APIRouter(tags=["events"])

class EventsAccepted(BaseModel):
    accepted: int
    queued: int
    duplicates: list[str]
    ids: list[str]


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAccepted,
    summary="Capture events (a JSON array of events, or one event object)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}},
                    "example": [example_event()],
                }
            },
        }
    },
    responses={
        413: {"description": "body larger than EVENTS_MAX_REQUEST_BYTES"},
        415: {"description": "not application/json"},
        422: {"description": "an invalid event"},
    },
)
async def capture_events(request: Request, principal: Annotated[Principal, Depends(any_principal)]) -> JSONResponse:
    settings = request.app.state.settings
    body = await read_json_body(request, settings.EVENTS_MAX_REQUEST_BYTES)
    try:
        events = parse_events(body, max_events=settings.EVENTS_MAX_PER_REQUEST, assign_ids=False)
    except EventsRejected as exc:
        for reason in exc.reasons:
            request.app.state.rejections.labels(reason=reason).inc()
        raise
    wrong = [
        ((i, "account_id"), f"must be the token's account ({principal.account_id})")
        for i, e in enumerate(events)
        if e["account_id"] != principal.account_id
    ]
    if wrong:
        raise HookValidationError(wrong)
    supplied = [e["event_id"] for e in events if e.get("event_id") is not None]
    unassigned = [e for e in events if e.get("event_id") is None]
    for event, event_id in zip(unassigned, new_event_ids(len(unassigned)), strict=True):
        event["event_id"] = event_id
    with tracing.span("actionhooks.accept", parent=request.headers.get("traceparent"),
                      account_id=principal.account_id, events=len(events)) as span:
        accepted = await run_in_threadpool(_store, request, principal.account_id, events, supplied, span.traceparent)
    if accepted.signal_raised:
        await run_in_threadpool(triggers_of(request).route, principal.account_id)
    return JSONResponse(
        status_code=202,
        content={
            "accepted": len(events),
            "queued": accepted.queued,
            "duplicates": accepted.duplicates,
            "ids": [e["event_id"] for e in events],
        },
    )


def new_event_ids(n: int) -> list[str]:
    """`n` random UUIDv4 strings from one read of the OS's random source.

    `str(uuid.uuid4())` per event is a syscall and a UUID object each (~5% of the API's CPU under
    load); here the version nibble is written as "4" and the variant nibble mapped into 8..b directly.
    """
    h = os.urandom(16 * n).hex()
    return [
        f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{_VARIANT[h[i + 16]]}{h[i + 17:i + 20]}-{h[i + 20:i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def _store(
    request: Request, account_id: int, events: list[dict[str, Any]], supplied: list[str], trace_context: str | None
) -> Any:
    """Store the request (a database failure propagates to the 503 handler of api/errors.py, which also
    tells /healthz when it means the database cannot write)."""
    with request.app.state.sessions() as session:
        accepted = accept_events(
            session,
            account_id,
            events,
            supplied_ids=supplied,
            dedup_window_sec=request.app.state.settings.EVENT_DEDUP_HOURS * 3600,
            trace_context=trace_context,
            archive=request.app.state.settings.EVENT_ARCHIVE_HOURS > 0,
        )
    request.app.state.write_health.succeeded()
    return accepted
