"""POST /events: validate the whole request, store it durably, answer 202.

The API does no matching or rendering: it validates and hands the events to the group commit
(storage/committer.py), which stores the requests that arrived together in one transaction (one
intake row) and, when the account had no routing pending, sends one trigger. That keeps a request's
cost independent of the number of hooks and keeps the API responsive while workers are busy.
"""

from __future__ import annotations

import os
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from actionhooks import tracing
from actionhooks.api.auth import Principal, any_principal
from actionhooks.api.body import read_json_body
from actionhooks.errors import EventsRejected, HookValidationError
from actionhooks.events import example_event, parse_events

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
        503: {"description": "the database failed, too many requests wait for it, or the API is shutting down "
                            "(Retry-After)"},
    },
)
async def capture_events(request: Request, principal: Annotated[Principal, Depends(any_principal)]) -> Response:
    state = request.app.state
    settings = state.settings
    body = await read_json_body(request, settings.EVENTS_MAX_REQUEST_BYTES)
    try:
        events = parse_events(body, max_events=settings.EVENTS_MAX_PER_REQUEST, assign_ids=False)
    except EventsRejected as exc:
        for reason in exc.reasons:
            state.rejections.labels(reason=reason).inc()
        raise
    account_id = principal.account_id
    wrong, supplied, unassigned = [], [], []
    for i, event in enumerate(events):  # one pass: every list below costs a walk of the request
        if event["account_id"] != account_id:
            wrong.append(((i, "account_id"), f"must be the token's account ({account_id})"))
        if event.get("event_id") is None:
            unassigned.append(event)
        else:
            supplied.append(event["event_id"])
    if wrong:
        raise HookValidationError(wrong)
    for event, event_id in zip(unassigned, new_event_ids(len(unassigned)), strict=True):
        event["event_id"] = event_id
    with tracing.span("actionhooks.accept", parent=request.headers.get("traceparent"),
                      account_id=account_id, events=len(events)) as span:
        # Durable when it returns. A database failure propagates to the 503 handler of api/errors.py
        # (which also tells /healthz when it means the database cannot write), Busy and ShuttingDown to
        # their own 503s.
        accepted = await state.committer.submit(account_id, events, supplied_ids=supplied,
                                                trace_context=span.traceparent)
    state.write_health.succeeded()
    # Encoded here with orjson: JSONResponse would use the standard json module, and the response
    # model only documents the shape (FastAPI does not re-validate a Response it is handed).
    answer = {"accepted": len(events), "queued": accepted.queued, "duplicates": accepted.duplicates,
              "ids": [e["event_id"] for e in events]}
    return Response(orjson.dumps(answer), status_code=202, media_type="application/json")


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
