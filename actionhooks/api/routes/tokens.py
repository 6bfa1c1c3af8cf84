"""/tokens: an account's admins list and revoke the account's API tokens (never seeing a token itself)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from actionhooks.api.auth import TOKEN_CACHE_SEC, Admin
from actionhooks.errors import NotFound
from actionhooks.storage.tokens import list_tokens, revoke_token

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenOut(BaseModel):
    id: int
    scope: str
    name: str
    created_at: datetime | None


@router.get("", response_model=list[TokenOut], summary="List the account's API tokens")
async def get_tokens(request: Request, principal: Admin) -> list[TokenOut]:
    found = await run_in_threadpool(list_tokens, request.app.state.sessions, principal.account_id)
    return [TokenOut(id=t.id, scope=t.scope, name=t.name, created_at=t.created_at) for t in found]


@router.delete(
    "/{id}",
    status_code=204,
    response_class=Response,
    summary=f"Revoke a token: refused at once here, by every API process within {TOKEN_CACHE_SEC:g} s",
)
async def delete_token(
    token_id: Annotated[int, Path(alias="id", ge=1, le=2**63 - 1)], request: Request, principal: Admin
) -> Response:
    revoked = await run_in_threadpool(revoke_token, request.app.state.sessions, token_id, principal.account_id)
    if revoked is None:
        raise NotFound("token", token_id)
    request.app.state.tokens.forget(revoked)
    return Response(status_code=204)
