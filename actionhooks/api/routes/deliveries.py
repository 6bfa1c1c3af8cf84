"""Per-hook delivery endpoints: test sending, the attempts log, the failed list and its replay."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from actionhooks.api.auth import Principal, admin_principal
from actionhooks.api.hook_loader import load_hook
from actionhooks.api.routes.hooks import HookId
from actionhooks.api.triggers import triggers_of
from actionhooks.delivery import Batch, attempt, make_transport
from actionhooks.delivery.config import mask_url, redact
from actionhooks.errors import DeliveryError, HookValidationError, TemplateError
from actionhooks.events import parse_events
from actionhooks.hooks.rendering import custom_data_for
from actionhooks.storage import deliveries
from actionhooks.storage.lookups import load_catalog, load_profiles
from actionhooks.templating import DictCatalog

router = APIRouter(tags=["delivery"])

Admin = Annotated[Principal, Depends(admin_principal)]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class TestRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {},
                {
                    "event": {
                        "event_type": "open",
                        "event_date": "2026-01-25T15:04:05Z",
                        "account_id": 23,
                        "is_test": True,
                        "list_id": 111,
                        "profile_id": "abc",
                        "event_data": {"campaign_id": 973, "message_id": 17},
                    }
                },
            ]
        },
    )
    event: dict[str, Any] | None = Field(None, description="the event to send; a sample is generated when absent")


class TestResult(BaseModel):
    ok: bool
    status_code: int | None
    error: str | None
    latency_ms: float | None
    payload: Any
    response_excerpt: str = Field("", description="the start of the receiver's answer (HTTP)")


def sample_event(account_id: int, hook_actions: frozenset[str], database_id: int | None) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": sorted(hook_actions)[0] if hook_actions else "deliv",
        "event_date": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "account_id": account_id,
        "list_id": database_id if database_id is not None else 1,
        "profile_id": "test-profile",
        "is_test": True,
        "event_data": {"campaign_id": 0, "message_id": 0, "segment_id": 0, "resource_id": 0},
    }


@router.post("/hooks/{id}/test", response_model=TestResult, summary="One synchronous test attempt, no retries")
def send_test(
    hook_id: HookId, request: Request, principal: Admin, body: Annotated[TestRequest | None, Body()] = None
) -> TestResult:
    return send_test_attempt(request, principal.account_id, hook_id, body.event if body is not None else None)


def send_test_attempt(
    request: Request, account_id: int, hook_id: int, given_event: dict[str, Any] | None
) -> TestResult:
    """One synchronous attempt of `given_event` (or a sample) through the hook's real transport.

    Shared by POST /hooks/{id}/test and the console's "Send test"."""
    settings = request.app.state.settings
    with request.app.state.sessions() as session:
        hook = load_hook(session, request, account_id, hook_id)
        if given_event is not None:
            given = {**given_event, "account_id": account_id, "is_test": True}
            try:
                event = parse_events(orjson.dumps(given), max_events=1)[0]
            except orjson.JSONEncodeError as exc:  # an integer past 64 bits or nesting orjson cannot write
                raise HookValidationError([(("body", "event"), f"cannot be encoded: {exc}")]) from None
            except HookValidationError as exc:
                raise HookValidationError([(("body", "event", *loc[1:]), msg) for loc, msg in exc.errors]) from None
        else:
            event = sample_event(account_id, hook.actions, hook.database_id)
        matched = {hook.id: [event]}
        profiles = load_profiles(session, account_id, [hook], matched)
        catalog = DictCatalog(load_catalog(session, account_id, [hook], matched))
    delivered = {k: v for k, v in event.items() if k != "content"}
    try:
        if hook.profile_fields or hook.values:
            delivered["custom_data"] = custom_data_for(hook, event, profiles, catalog)
    except TemplateError as exc:
        return TestResult(
            ok=False, status_code=None, error=f"rendering failed: {exc}", latency_ms=None, payload=[delivered]
        )
    batch = Batch(hook_id=hook.id, batch_id=uuid.uuid4().hex, attempt=1, events=[delivered])
    started = time.perf_counter()
    with make_transport(hook.delivery, settings) as transport:
        try:
            receipt = attempt(transport, batch)
        except DeliveryError as exc:
            return TestResult(
                ok=False,
                status_code=exc.status_code,
                error=redact(f"{type(exc).__name__}: {exc.message}"),
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
                payload=[delivered],
            )
    return TestResult(
        ok=True,
        status_code=receipt.status_code,
        error=None,
        latency_ms=round(receipt.latency_ms, 2),
        # GET mode's payload is the URLs requested: the configured URL's credentials are masked there too.
        payload=[mask_url(p) if isinstance(p, str) else p for p in receipt.payload]
        if isinstance(receipt.payload, list)
        else receipt.payload,
        response_excerpt=receipt.response_excerpt,
    )


@router.get("/hooks/{id}/attempts", summary="Recent delivery attempts, newest first")
def list_attempts(
    hook_id: HookId, request: Request, principal: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    return attempts_of(request, principal.account_id, hook_id, limit)


def attempts_of(request: Request, account_id: int, hook_id: int, limit: int) -> list[dict[str, Any]]:
    """The hook's latest attempts, newest first (REST and console)."""
    with request.app.state.sessions() as session:
        load_hook(session, request, account_id, hook_id)
        rows = deliveries.attempts(session, hook_id, limit)
    return [
        {
            "id": a.id,
            "batch_id": a.delivery_id,
            "attempt": a.attempt,
            "time": _iso(a.started_at),
            "outcome": a.outcome,
            "status_code": a.status_code,
            "error": a.error,
            "latency_ms": None if a.latency_ms is None else round(a.latency_ms, 2),
            "events": a.n_events,
        }
        for a in rows
    ]


@router.get("/hooks/{id}/failed", summary="Batches that used up every attempt, with their last error")
def list_failed(
    hook_id: HookId, request: Request, principal: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    return failed_of(request, principal.account_id, hook_id, limit)


def failed_of(request: Request, account_id: int, hook_id: int, limit: int) -> list[dict[str, Any]]:
    """The hook's failed batches, latest failure first (REST and console)."""
    with request.app.state.sessions() as session:
        load_hook(session, request, account_id, hook_id)
        rows = deliveries.failed(session, hook_id, limit)
    return [
        {
            "id": d.id,
            "attempts": d.attempts,
            "failed_at": _iso(d.failed_at),
            "created_at": _iso(d.created_at),
            "last_error": d.last_error,
            "last_status_code": d.last_status_code,
            "n_events": d.n_events,
            "events": orjson.loads(d.events),
        }
        for d in rows
    ]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"ids": ["3f2c0d0e5a4b4b0f"]}]})
    ids: list[str] | None = Field(None, max_length=10_000, description="failed batch ids; all when absent")


@router.post("/hooks/{id}/failed/replay", summary="Send failed batches again (all, or the given ids)")
async def replay_failed(
    hook_id: HookId, request: Request, principal: Admin, body: Annotated[ReplayRequest | None, Body()] = None
) -> dict[str, int]:
    return {"replayed": await replay_batches(request, principal.account_id, hook_id, body.ids if body else None)}


async def replay_batches(request: Request, account_id: int, hook_id: int, ids: list[str] | None) -> int:
    """Move failed batches (all, or `ids`) back to pending and wake a worker; how many moved (REST and console)."""

    def _replay() -> int:
        with request.app.state.sessions() as session:
            load_hook(session, request, account_id, hook_id)
            count = deliveries.replay(session, hook_id, ids, time.time())
            session.commit()
            return count

    count = await run_in_threadpool(_replay)
    if count:
        await run_in_threadpool(triggers_of(request).drain, hook_id)
    return count
