"""/quarantine: the account's events whose routing kept failing, and their replay (admin tokens only).

See storage/quarantine.py for how an event gets there; replaying it after the cause is fixed routes it
like any other accepted event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from actionhooks.api.auth import Principal, admin_principal
from actionhooks.api.triggers import triggers_of
from actionhooks.storage import quarantine

router = APIRouter(tags=["quarantine"])

Admin = Annotated[Principal, Depends(admin_principal)]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@router.get("/quarantine", summary="Accepted events set aside because routing them kept failing, with the error")
def list_quarantine(
    request: Request, principal: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    with request.app.state.sessions() as session:
        rows = quarantine.listed(session, principal.account_id, limit)
    return [
        {
            "id": row.id,
            "event_id": row.event_id,
            "accepted_at": _iso(row.accepted_at),
            "quarantined_at": _iso(row.quarantined_at),
            "error": row.error,
            "event": orjson.loads(row.event),
        }
        for row in rows
    ]


class QuarantineReplay(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"ids": [12, 13]}]})
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        None, max_length=10_000, description="quarantine ids; all of the account's when absent"
    )


@router.post("/quarantine/replay", summary="Route quarantined events again (all, or the given ids)")
async def replay_quarantine(
    request: Request, principal: Admin, body: Annotated[QuarantineReplay | None, Body()] = None
) -> dict[str, int]:
    def _replay() -> int:
        with request.app.state.sessions() as session:
            count = quarantine.replay(session, principal.account_id, body.ids if body is not None else None)
            session.commit()
            return count

    count = await run_in_threadpool(_replay)
    if count:
        await run_in_threadpool(triggers_of(request).route, principal.account_id)
    return {"replayed": count}
