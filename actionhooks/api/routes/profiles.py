"""/databases/{list_id}/profiles: the profile fields hooks copy into custom_data."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from actionhooks.api.auth import Admin
from actionhooks.errors import HookValidationError
from actionhooks.storage import profiles

router = APIRouter(prefix="/databases/{list_id}/profiles", tags=["profiles"])

BULK_MAX = 1000
FIELD_VALUE_MAX_BYTES = 4096  # one field's value, as JSON
PROFILE_MAX_BYTES = 16_384  # all of a profile's fields, as JSON: a routing pass may load 5,000 profiles
_PROFILE_ID = r"^[^\x00-\x1f\x7f]+$"
ListId = Annotated[int, Path(ge=0, le=2**63 - 1, description="the database (list) id")]
ProfileId = Annotated[str, Path(min_length=1, max_length=200, pattern=_PROFILE_ID)]


def _deliverable(fields: dict[str, Any]) -> dict[str, Any]:
    """Refuse at save what orjson cannot write into a delivered batch (an integer past 64 bits, deep nesting).

    Accepted, such a field would make every later routing of the account's events fail. The fields
    are written two containers deep (batch > event > custom_data), hence the wrapping.
    """
    try:
        size = len(orjson.dumps([[fields]]))
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot be delivered: {exc}") from None
    if size > PROFILE_MAX_BYTES:
        raise ValueError(f"the fields take {size} bytes as JSON, over the limit of {PROFILE_MAX_BYTES}")
    return fields


def _bounded_value(value: Any) -> Any:
    """One field's value is at most FIELD_VALUE_MAX_BYTES as JSON (it is copied into delivered events)."""
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return value  # reported for the whole profile by _deliverable, with the reason
    if size > FIELD_VALUE_MAX_BYTES:
        raise ValueError(f"value takes {size} bytes as JSON, over the limit of {FIELD_VALUE_MAX_BYTES}")
    return value


Fields = Annotated[
    dict[Annotated[str, Field(max_length=200)], Annotated[Any, AfterValidator(_bounded_value)]],
    Field(max_length=1000, description="field name -> any JSON value"),
    AfterValidator(_deliverable),
]


class ProfileIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"fields": {"email": "ann@example.com", "_fname": "Ann"}}]}
    )
    fields: Fields


class BulkItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile_id: str = Field(min_length=1, max_length=200, pattern=_PROFILE_ID)
    fields: Fields


class BulkIn(BaseModel):
    """Up to BULK_MAX profiles, stored all together or not at all."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "profiles": [
                        {"profile_id": "a1b2c3", "fields": {"email": "ann@example.com", "_fname": "Ann"}},
                        {"profile_id": "d4e5f6", "fields": {"email": "bob@example.com", "_fname": "Bob"}},
                    ]
                }
            ]
        },
    )
    profiles: list[BulkItem] = Field(min_length=1, max_length=BULK_MAX)

    @model_validator(mode="after")
    def _unique_ids(self) -> BulkIn:
        seen: set[str] = set()
        errors = []
        for index, item in enumerate(self.profiles):
            if item.profile_id in seen:
                errors.append((("body", "profiles", index, "profile_id"), f"profile_id {item.profile_id!r} repeats"))
            seen.add(item.profile_id)
        if errors:
            raise HookValidationError(errors)
        return self


class ProfileOut(BaseModel):
    list_id: int
    profile_id: str
    fields: dict[str, Any]
    updated_at: datetime


class BulkOut(BaseModel):
    upserted: int


@router.put("/{profile_id}", response_model=ProfileOut, summary="Create or replace a profile's fields")
def put_profile(
    list_id: ListId, profile_id: ProfileId, body: ProfileIn, principal: Admin, request: Request
) -> ProfileOut:
    with request.app.state.sessions.begin() as session:
        profiles.put_profiles(session, principal.account_id, list_id, [(profile_id, body.fields)])
        fields, updated_at = profiles.get_profile(session, principal.account_id, list_id, profile_id)
    return ProfileOut(list_id=list_id, profile_id=profile_id, fields=fields, updated_at=updated_at)


@router.post("", response_model=BulkOut, summary="Create or replace many profiles at once (all or nothing)")
def put_profiles(list_id: ListId, body: BulkIn, principal: Admin, request: Request) -> BulkOut:
    with request.app.state.sessions.begin() as session:
        profiles.put_profiles(
            session, principal.account_id, list_id, [(item.profile_id, item.fields) for item in body.profiles]
        )
    return BulkOut(upserted=len(body.profiles))


@router.get("/{profile_id}", response_model=ProfileOut, summary="Read a profile's fields")
def get_profile(list_id: ListId, profile_id: ProfileId, principal: Admin, request: Request) -> ProfileOut:
    with request.app.state.sessions.begin() as session:
        fields, updated_at = profiles.get_profile(session, principal.account_id, list_id, profile_id)
    return ProfileOut(list_id=list_id, profile_id=profile_id, fields=fields, updated_at=updated_at)


@router.delete("/{profile_id}", status_code=204, response_class=Response, summary="Delete a profile")
def delete_profile(list_id: ListId, profile_id: ProfileId, principal: Admin, request: Request) -> Response:
    with request.app.state.sessions.begin() as session:
        profiles.delete_profile(session, principal.account_id, list_id, profile_id)
    return Response(status_code=204)
