"""The hook as users write it (HookSpec), as the engine keeps it (Hook), and as the API shows it (HookOut).

HookSpec is the one place that says what a valid hook is: the API parses request bodies with it and
storage re-reads rows with it, so a hook the engine runs always passed the same rules. Secrets stay
in HookSpec and Hook; only HookOut replaces them with "***".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    create_model,
    field_validator,
    model_validator,
)

from actionhooks.delivery.config import MASK, DeliveryConfig
from actionhooks.events import EVENT_TYPES, ID_PATHS

__all__ = [
    "FILTER_KINDS",
    "MATCH_LIMITS",
    "MATCH_OPS",
    "NAME_MAX_LENGTH",
    "CustomData",
    "Filters",
    "Hook",
    "HookOut",
    "HookSpec",
    "MatchCondition",
    "masked_delivery",
    "secret_paths",
]

NAME_MAX_LENGTH = 200  # hooks.name column
# The kinds of id filter: every object an event names inside event_data (events.ID_PATHS), in its order.
FILTER_KINDS = tuple(kind for kind, path in ID_PATHS.items() if path[0] == "event_data")
# Same bounds as event ids (events.py): a filter id that no event can carry would silently never match.
Id = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
IdList = Annotated[list[Id], Field(max_length=10_000)]
Key = Annotated[str, Field(min_length=1, max_length=200)]


def _known_action(code: str) -> str:
    if code not in EVENT_TYPES:
        raise ValueError(f"unknown event type {code!r}; known codes: {', '.join(EVENT_TYPES)}")
    return code


ActionCode = Annotated[str, AfterValidator(_known_action)]


# Payload filters (README, "Payload filters"): every bound is checked at save (422 at
# filters.match.<index>) so the router never meets a condition it cannot evaluate cheaply.
MATCH_LIMITS = {
    "conditions": 20,  # per hook
    "path_chars": 200,
    "path_depth": 8,  # dot-separated segments
    "value_chars": 1000,  # a string value, and each string of an `in`/`nin` list
    "list_values": 1000,  # values of an `in`/`nin` list
}
MATCH_OPS = ("eq", "ne", "in", "nin", "exists", "gt", "gte", "lt", "lte", "prefix", "contains")
_SEGMENT = r"[^.\x00-\x1f\x7f]+"


def _scalar(value: Any, what: str) -> None:
    """Raise unless `value` is a JSON scalar within the size limit (objects and arrays are never compared)."""
    if isinstance(value, str):
        if len(value) > MATCH_LIMITS["value_chars"]:
            raise ValueError(f"{what} is {len(value)} characters, over the limit of {MATCH_LIMITS['value_chars']}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be a finite number")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{what} is outside the 64-bit integer range")
    elif value is not None and not isinstance(value, bool):
        raise ValueError(f"{what} must be a string, a number, true, false or null")


class MatchCondition(BaseModel):
    """One payload condition: the value at `path` (dot-separated keys; a decimal segment indexes a list)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(
        min_length=1,
        max_length=MATCH_LIMITS["path_chars"],
        pattern=rf"^{_SEGMENT}(\.{_SEGMENT}){{0,{MATCH_LIMITS['path_depth'] - 1}}}$",
        description=f"e.g. event_data.params.plan; at most {MATCH_LIMITS['path_depth']} segments",
    )
    op: Literal["eq", "ne", "in", "nin", "exists", "gt", "gte", "lt", "lte", "prefix", "contains"]
    value: Any = Field(None, description="exists: true/false (default true); in/nin: a list of values")

    @model_validator(mode="before")
    @classmethod
    def _exists_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("op") == "exists" and "value" not in data:
            return {**data, "value": True}
        return data

    @model_validator(mode="after")
    def _value_fits_op(self) -> MatchCondition:
        value, op = self.value, self.op
        if op in ("in", "nin"):
            if not isinstance(value, list) or not value:
                raise ValueError(f"`{op}` takes a non-empty list of values")
            if len(value) > MATCH_LIMITS["list_values"]:
                raise ValueError(f"`{op}` has {len(value)} values, over the limit of {MATCH_LIMITS['list_values']}")
            for i, item in enumerate(value):
                _scalar(item, f"value {i}")
            return self
        if isinstance(value, list):
            raise ValueError(f"`{op}` takes one value, not a list (use `in` for several)")
        _scalar(value, "the value")
        if op == "exists":
            if not isinstance(value, bool):
                raise ValueError("`exists` takes true or false")
        elif op in ("gt", "gte", "lt", "lte"):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f"`{op}` compares with a number or a string")
        elif op == "prefix":
            if not isinstance(value, str) or not value:
                raise ValueError("`prefix` takes a non-empty string")
        elif op == "contains" and value is None:
            raise ValueError("`contains` takes a string (substring) or a value (list element), not null")
        return self


class _PayloadFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: list[MatchCondition] = Field(default_factory=list, max_length=MATCH_LIMITS["conditions"])


Filters = create_model(
    "Filters",
    __base__=_PayloadFilters,
    __doc__="""event_data ids a hook is limited to; an empty list does not restrict (AND across kinds, OR within).

    One list of ids per FILTER_KINDS. `match` adds payload conditions on any field of the event; all
    must hold (AND).
    """,
    **{kind: (IdList, Field(default_factory=list)) for kind in FILTER_KINDS},  # type: ignore[call-overload]
)


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

    @model_validator(mode="before")
    @classmethod
    def _ignore_engine_state(cls, data: Any) -> Any:
        """`state` and `paused_since` are the engine's to set (GET shows them): a client that echoes
        a hook it read is not refused for them; `active` is how a user stops or starts a hook."""
        if isinstance(data, dict) and ("state" in data or "paused_since" in data):
            return {k: v for k, v in data.items() if k not in ("state", "paused_since")}
        return data


@dataclass(frozen=True)
class Hook:
    """A stored hook with its secrets; `version` grows on every change (workers compare it)."""

    id: int
    account_id: int
    version: int
    created_at: datetime
    updated_at: datetime
    spec: HookSpec
    paused_since: float | None = None  # Unix time its receiver was found dead (README, "Pause and resume")

    @property
    def state(self) -> Literal["active", "paused", "stopped"]:
        if not self.spec.active:
            return "stopped"
        return "paused" if self.paused_since is not None else "active"

    def public(self) -> HookOut:
        """The API view: the hook as the REST API answers it, every secret shown as "***"."""
        data = self.spec.model_dump(mode="json")
        data["delivery"] = masked_delivery(self.spec.delivery)
        paused = None if self.paused_since is None else datetime.fromtimestamp(self.paused_since, UTC)
        return HookOut(
            id=self.id, account_id=self.account_id, created_at=self.created_at, updated_at=self.updated_at,
            state=self.state, paused_since=paused, **data
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
    state: Literal["active", "paused", "stopped"] = "active"
    paused_since: datetime | None = None


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
