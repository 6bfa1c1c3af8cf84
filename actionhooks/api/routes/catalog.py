"""/catalog/{kind}: the names custom_data templates show ({{campaign_name}}, {{message_subject}}, …)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from actionhooks.api.auth import Admin
from actionhooks.errors import HookValidationError
from actionhooks.storage import catalog
from actionhooks.templating import CATALOG_KINDS, CatalogEntry

router = APIRouter(prefix="/catalog", tags=["catalog"])

Kind = StrEnum("Kind", {kind: kind for kind in CATALOG_KINDS})  # type: ignore[misc]
EntryId = Annotated[int, Path(alias="id", ge=0, le=2**63 - 1)]
_TEXT = 1000  # a name a template shows: {{campaign_name}} and the like (a campaign name, an email subject)
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL


class EntryIn(BaseModel):
    """A catalog entry; `subid` only for campaigns, `subject` only for messages."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Spring sale"}, {"name": "Spring sale", "subid": "spring-24"}]},
    )
    name: str = Field(max_length=_TEXT, pattern=_NO_NUL)
    subid: str | None = Field(None, max_length=_TEXT, pattern=_NO_NUL, description="campaigns only")
    subject: str | None = Field(None, max_length=_TEXT, pattern=_NO_NUL, description="messages only")


class EntryOut(BaseModel):
    kind: str
    id: int
    name: str
    subid: str | None = None
    subject: str | None = None


def _out(kind: str, ident: int, entry: CatalogEntry) -> EntryOut:
    return EntryOut(kind=kind, id=ident, name=entry.name, subid=entry.subid, subject=entry.subject)


def _check_kind_fields(kind: str, body: EntryIn) -> None:
    errors = []
    if body.subid is not None and kind != "campaigns":
        errors.append((("body", "subid"), f"subid is only for campaigns, not {kind}"))
    if body.subject is not None and kind != "messages":
        errors.append((("body", "subject"), f"subject is only for messages, not {kind}"))
    if errors:
        raise HookValidationError(errors)


@router.put("/{kind}/{id}", response_model=EntryOut, summary="Create or replace a catalog entry")
def put_entry(kind: Kind, ident: EntryId, body: EntryIn, principal: Admin, request: Request) -> EntryOut:
    _check_kind_fields(kind.value, body)
    entry = CatalogEntry(body.name, body.subid, body.subject)
    with request.app.state.sessions.begin() as session:
        catalog.put_entry(session, principal.account_id, kind.value, ident, entry)
    return _out(kind.value, ident, entry)


@router.get("/{kind}", response_model=list[EntryOut], summary="List the account's entries of one kind")
def list_entries(kind: Kind, principal: Admin, request: Request) -> list[EntryOut]:
    with request.app.state.sessions.begin() as session:
        entries = catalog.list_entries(session, principal.account_id, kind.value)
    return [_out(kind.value, ident, entry) for ident, entry in entries]


@router.get("/{kind}/{id}", response_model=EntryOut, summary="Read a catalog entry")
def get_entry(kind: Kind, ident: EntryId, principal: Admin, request: Request) -> EntryOut:
    with request.app.state.sessions.begin() as session:
        entry = catalog.get_entry(session, principal.account_id, kind.value, ident)
    return _out(kind.value, ident, entry)


@router.delete("/{kind}/{id}", status_code=204, response_class=Response, summary="Delete a catalog entry")
def delete_entry(kind: Kind, ident: EntryId, principal: Admin, request: Request) -> Response:
    with request.app.state.sessions.begin() as session:
        catalog.delete_entry(session, principal.account_id, kind.value, ident)
    return Response(status_code=204)
