"""The hook as users write it (HookSpec), as the engine keeps it (Hook), and as the API shows it (HookOut).

HookSpec is the one place that says what a valid hook is: the API parses request bodies with it and
storage re-reads rows with it, so a hook the engine runs always passed the same rules. Secrets stay
in HookSpec and Hook; only HookOut replaces them with "***".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator

from actionhooks.delivery.config import MASK, DeliveryConfig
from actionhooks.events import EVENT_TYPES

__all__ = [
    "FILTER_KINDS",
    "NAME_MAX_LENGTH",
    "CustomData",
    "Filters",
    "Hook",
    "HookOut",
    "HookSpec",
    "masked_delivery",
    "secret_paths",
]

NAME_MAX_LENGTH = 200  # hooks.name column
FILTER_KINDS = ("resources", "campaigns", "messages", "segments", "pixels")
# Same bounds as event ids (events.py): a filter id that no event can carry would silently never match.
Id = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
IdList = Annotated[list[Id], Field(max_length=10_000)]
Key = Annotated[str, Field(min_length=1, max_length=200)]


def _known_action(code: str) -> str:
    if code not in EVENT_TYPES:
        raise ValueError(f"unknown event type {code!r}; known codes: {', '.join(EVENT_TYPES)}")
    return code


ActionCode = Annotated[str, AfterValidator(_known_action)]


class Filters(BaseModel):
    """event_data ids a hook is limited to; an empty list does not restrict (AND across kinds, OR within)."""

    model_config = ConfigDict(extra="forbid")
    resources: IdList = Field(default_factory=list)
    campaigns: IdList = Field(default_factory=list)
    messages: IdList = Field(default_factory=list)
    segments: IdList = Field(default_factory=list)
    pixels: IdList = Field(default_factory=list)


class CustomData(BaseModel):
    """Profile fields to copy and templates to render into each delivered event's custom_data."""

    model_config = ConfigDict(extra="forbid")
    profile_fields: list[Key] = Field(default_factory=list, max_length=200)
    values: dict[Key, Annotated[str, Field(max_length=10_000)]] = Field(default_factory=dict, max_length=200)


EXAMPLE_HOOK: dict[str, Any] = {
    "name": "CRM sync",
    "active": True,
    "database_id": None,
    "actions": ["deliv", "open", "click"],
    "filters": {"resources": [3], "campaigns": [973]},
    "custom_data": {
        "profile_fields": ["email", "_fname"],
        "values": {"id": "{{uuid}}", "eventTimeUnix": "{{event_date_unix}}", "cname": "{{campaign_name}}"},
    },
    "include_content": False,
    "delivery": {
        "type": "http",
        "url": "https://crm.example.com/hooks/altcraft",
        "max_batch_size": 100,
        "batch_timeout_sec": 5,
        "auth": {"type": "bearer", "token": "crm-api-token"},
    },
}


class HookSpec(BaseModel):
    """Everything a user sets on a hook: the body of POST and PUT /hooks."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_HOOK]})
    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$")  # no control chars
    active: StrictBool = True
    database_id: Id | None = Field(None, description="null = every database of the account")
    actions: list[ActionCode] = Field(min_length=1, max_length=len(EVENT_TYPES), description="event type codes")
    filters: Filters = Field(default_factory=Filters)
    custom_data: CustomData = Field(default_factory=CustomData)
    include_content: StrictBool = False
    delivery: DeliveryConfig

    @field_validator("actions")
    @classmethod
    def _unique(cls, actions: list[str]) -> list[str]:
        return list(dict.fromkeys(actions))


@dataclass(frozen=True)
class Hook:
    """A stored hook with its secrets; `version` grows on every change (workers compare it)."""

    id: int
    account_id: int
    version: int
    created_at: datetime
    updated_at: datetime
    spec: HookSpec

    def public(self) -> HookOut:
        """The API view: the contract's hook shape with every secret shown as "***"."""
        data = self.spec.model_dump(mode="json")
        data["delivery"] = masked_delivery(self.spec.delivery)
        return HookOut(
            id=self.id, account_id=self.account_id, created_at=self.created_at, updated_at=self.updated_at, **data
        )


class HookOut(BaseModel):
    """A hook as the API returns it (secrets masked)."""

    id: int
    account_id: int
    name: str
    active: bool
    database_id: int | None
    actions: list[str]
    filters: Filters
    custom_data: CustomData
    include_content: bool
    delivery: DeliveryConfig
    created_at: datetime
    updated_at: datetime


def secret_paths(model: BaseModel, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of the secret fields of a delivery config, nested ones (auth.password) included."""
    for name in getattr(model, "SECRET_FIELDS", ()):
        yield (*prefix, name)
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from secret_paths(value, (*prefix, name))


def masked_delivery(delivery: BaseModel) -> dict[str, Any]:
    """The delivery config as JSON with each set secret and each credential in a URL or header replaced by MASK."""
    data = delivery.model_dump(mode="json")
    mask_inline = getattr(delivery, "mask_inline", None)  # delivery models; capture sources reuse this too
    if mask_inline is not None:
        mask_inline(data)
    for path in secret_paths(delivery):
        *parents, leaf = path
        node = data
        for part in parents:
            node = node[part]
        if node.get(leaf) is not None:
            node[leaf] = MASK
    return data
