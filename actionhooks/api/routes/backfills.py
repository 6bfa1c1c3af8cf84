"""Backfill endpoints: deliver a hook the archived events of an interval (README, "History").

The API only validates, records the job (storage/backfills.py) and sends the worker a trigger through
the same Celery client as route triggers; the worker does the scanning and delivering
(worker/backfill.py), so a request never costs more than a few statements.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from actionhooks.api.auth import Principal, admin_principal
from actionhooks.api.errors import error_body
from actionhooks.api.routes.hooks import HookId
from actionhooks.api.triggers import triggers_of
from actionhooks.errors import HookValidationError, NotFound
from actionhooks.storage import archive, backfills
from actionhooks.storage.tables import Hook

router = APIRouter(tags=["history"])

Admin = Annotated[Principal, Depends(admin_principal)]
BackfillId = Annotated[int, Path(alias="id", ge=1, le=2**63 - 1, description="the backfill's id")]

# Unfinished backfills one hook may have; more is refused rather than queued without bound.
MAX_OPEN_PER_HOOK = 10
# How far `to` may lie ahead of the server's clock (client clock skew); it is cut at "now" anyway.
CLOCK_SKEW_SEC = 300.0


class BackfillRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=False,
        json_schema_extra={"examples": [{"from": "2026-01-25T00:00:00Z", "to": "2026-01-26T00:00:00Z"}]},
    )
    from_: AwareDatetime = Field(alias="from", description="start of the interval (RFC 3339, inclusive)")
    to: AwareDatetime = Field(description="end of the interval (RFC 3339, exclusive; at most now)")


class BackfillOut(BaseModel):
    id: int
    hook_id: int
    state: str = Field(description="running | done | cancelled | failed")
    phase: str = Field(description="queued | scanning | delivering | finished: which part of `running`")
    from_: str = Field(alias="from")
    to: str
    scanned: int = Field(description="archived events of the interval read so far")
    matched: int = Field(description="of those, events the hook's filters select")
    delivered: int
    failed: int = Field(description="events on the hook's failed list (replayable), render failures included")
    pending: int = Field(description="matched events in batches not sent yet")
    error: str | None
    created_at: str
    finished_at: str | None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _out(p: backfills.Progress) -> dict[str, Any]:
    return {
        "id": p.id, "hook_id": p.hook_id, "state": p.state, "phase": p.phase, "from": _iso(p.from_at),
        "to": _iso(p.to_at), "scanned": p.scanned, "matched": p.matched, "delivered": p.delivered,
        "failed": p.failed, "pending": p.pending, "error": p.error, "created_at": _iso(p.created_at),
        "finished_at": _iso(p.finished_at),
    }


def _conflict(status: int, loc: list[str | int], msg: str, kind: str) -> HTTPException:
    return HTTPException(status, detail=error_body([(loc, msg, kind)])["detail"])


def _interval(body: BackfillRequest, hours: float, now: float) -> tuple[float, float]:
    """[from, to) as Unix times, `to` cut at now (later events are delivered live); 422 naming the field."""
    start, end = body.from_.timestamp(), body.to.timestamp()
    if hours <= 0:
        raise HookValidationError([(("body", "from"), "the event archive is off (EVENT_ARCHIVE_HOURS is 0)")])
    if start >= end:
        raise HookValidationError([(("body", "from"), "must be before `to`")])
    oldest = archive.oldest_kept(now, hours)
    if start < oldest:
        raise HookValidationError(
            [(("body", "from"), f"is older than the archive, which starts at {_iso(oldest)} (EVENT_ARCHIVE_HOURS)")]
        )
    if start >= now:
        raise HookValidationError([(("body", "from"), "is in the future; the archive ends now")])
    if end > now + CLOCK_SKEW_SEC:
        raise HookValidationError([(("body", "to"), "is in the future; the archive ends now")])
    return start, min(end, now)


@router.post(
    "/hooks/{id}/backfill",
    status_code=202,
    response_model=BackfillOut,
    summary="Deliver the archived events of an interval that the hook's current filters select",
    responses={
        404: {"description": "no such hook in this account"},
        409: {"description": "the hook is stopped"},
        422: {"description": "an interval outside the archive, or `from` not before `to`"},
        429: {"description": "the hook already has MAX_OPEN_PER_HOOK unfinished backfills"},
    },
)
async def start_backfill(
    hook_id: HookId, body: BackfillRequest, principal: Admin, request: Request
) -> dict[str, Any]:
    settings = request.app.state.settings
    now = time.time()
    start, end = _interval(body, settings.EVENT_ARCHIVE_HOURS, now)

    def create() -> backfills.Progress:
        with request.app.state.sessions() as session:
            hook = session.scalar(
                select(Hook).where(Hook.id == hook_id, Hook.account_id == principal.account_id).with_for_update()
            )
            if hook is None:
                raise NotFound("hook", hook_id)
            if not hook.active:
                raise _conflict(409, ["path", "id"], "the hook is stopped; activate it first", "hook_stopped")
            if backfills.open_jobs(session, hook_id) >= MAX_OPEN_PER_HOOK:
                raise _conflict(
                    429, ["path", "id"], f"the hook has {MAX_OPEN_PER_HOOK} unfinished backfills", "too_many"
                )
            job_id = backfills.create(session, hook_id, principal.account_id, from_at=start, to_at=end, now=now)
            session.commit()
            return backfills.progress(session, principal.account_id, job_id)

    created = await run_in_threadpool(create)
    await run_in_threadpool(triggers_of(request).backfill, created.id)
    return _out(created)


@router.get("/backfills/{id}", response_model=BackfillOut, summary="A backfill's progress")
def get_backfill(backfill_id: BackfillId, principal: Admin, request: Request) -> dict[str, Any]:
    with request.app.state.sessions() as session:
        return _out(backfills.progress(session, principal.account_id, backfill_id))


@router.post(
    "/backfills/{id}/cancel",
    response_model=BackfillOut,
    summary="Stop a backfill; its batches not sent yet are withdrawn",
    responses={409: {"description": "the backfill already finished"}},
)
def cancel_backfill(backfill_id: BackfillId, principal: Admin, request: Request) -> dict[str, Any]:
    with request.app.state.sessions() as session:
        if not backfills.cancel(session, principal.account_id, backfill_id, time.time()):
            raise _conflict(409, ["path", "id"], "the backfill already finished", "finished")
        session.commit()
        return _out(backfills.progress(session, principal.account_id, backfill_id))
