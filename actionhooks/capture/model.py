"""The capture source as users write it (SourceSpec), as the engine keeps it (Source), as the API shows it.

SourceSpec is the one place that says what a valid source is: the API parses bodies with it and
storage re-reads rows with it. Secrets (`secret`, `auth.password`, `auth.secret`) stay in SourceSpec
and Source; only `Source.public()` replaces them with "***" (write-only, like hook secrets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from actionhooks.delivery.config import MASK
from actionhooks.delivery.signing import sign
from actionhooks.events import EVENT_TYPES
from actionhooks.hooks.models import masked_delivery

__all__ = ["MASK", "Source", "SourceOut", "SourceSpec", "default_event_types"]

Id = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
_DEFAULT_EVENT_TYPES: dict[str, list[str]] = {
    "pixel": ["pixel"],
    "redirect": ["click"],
    "site": ["page_view", "site_event", "identify"],
}
# RFC 6265 cookie-name token characters; BpmTrackingId (Creatio) and ah_vid both fit.
_COOKIE_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,64}$"
_NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]+$"  # PostgreSQL text refuses NUL; names are shown in consoles
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_ORIGIN = re.compile(rf"^https?://{_LABEL}(\.{_LABEL})*(:[0-9]{{1,5}})?$")


def default_event_types(kind: str) -> list[str]:
    return list(_DEFAULT_EVENT_TYPES.get(kind, []))


def _known_code(code: str) -> str:
    if code not in EVENT_TYPES:
        raise ValueError(f"unknown event type {code!r}")
    return code


def _host_pattern(value: str) -> str:
    value = value.lower().rstrip(".")
    if not _HOST.match(value) or len(value) > 253:
        raise ValueError("must be a host name such as shop.example or *.shop.example (ASCII/punycode, no port)")
    return value


def _origin(value: str) -> str:
    value = value.lower().rstrip("/")
    if not _ORIGIN.match(value):
        raise ValueError("must be an origin such as https://shop.example or http://shop.example:8080 (no path)")
    return value


def _whsec(value: str) -> str:
    sign(value, "probe", 0, b"")  # ValueError naming what is wrong with the secret
    return value


class NoAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["none"] = "none"


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    type: Literal["basic"]
    username: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^:\x00-\x1f\x7f]+$")]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class StandardWebhooksAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("secret",)
    type: Literal["standard_webhooks"]
    secret: Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_whsec)]


Auth = Annotated[NoAuth | BasicAuth | StandardWebhooksAuth, Field(discriminator="type")]


class SourceSpec(BaseModel):
    """A source as POST/PATCH /sources accept it; field names are the public API's."""

    model_config = ConfigDict(extra="forbid")
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("secret",)

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_CONTROL_CHARS)]
    kind: Literal["pixel", "redirect", "webhook", "site"]
    active: bool = True
    list_id: Id | None = None
    event_types: Annotated[list[Annotated[str, AfterValidator(_known_code)]], Field(max_length=50)] = Field(
        default_factory=list
    )
    allowed_origins: Annotated[list[Annotated[str, AfterValidator(_origin)]], Field(max_length=100)] = Field(
        default_factory=list
    )
    allowed_hosts: Annotated[list[Annotated[str, AfterValidator(_host_pattern)]], Field(max_length=100)] = Field(
        default_factory=list
    )
    cookie_name: Annotated[str, StringConstraints(pattern=_COOKIE_NAME)] = "ah_vid"
    anonymize_ip: bool = True
    respect_do_not_track: bool = True
    auth: Auth = Field(default_factory=NoAuth)
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200, pattern=_NO_CONTROL_CHARS)] | None = None

    @model_validator(mode="after")
    def _event_types_of_kind(self) -> SourceSpec:
        if not self.event_types:
            if self.kind == "webhook":
                raise ValueError("event_types: a webhook source must list the event types it may produce")
            self.event_types = default_event_types(self.kind)
        self.event_types = list(dict.fromkeys(self.event_types))
        return self


@dataclass(frozen=True)
class Source:
    """A stored source with its secrets; `key` is public, `spec.secret` signs links."""

    id: int
    account_id: int
    key: str
    created_at: datetime
    updated_at: datetime
    spec: SourceSpec

    def public(self, urls: dict[str, str]) -> SourceOut:
        """The API view: secrets masked, with the public URLs this source's kind serves."""
        data = masked_delivery(self.spec)
        data["auth"] = masked_delivery(self.spec.auth)
        return SourceOut(id=self.id, account_id=self.account_id, key=self.key, urls=urls,
                         created_at=self.created_at, updated_at=self.updated_at, **data)


class SourceOut(BaseModel):
    """A source as the API returns it (secrets masked)."""

    id: int
    account_id: int
    name: str
    kind: str
    active: bool
    key: str
    list_id: int | None
    event_types: list[str]
    allowed_origins: list[str]
    allowed_hosts: list[str]
    cookie_name: str
    anonymize_ip: bool
    respect_do_not_track: bool
    auth: dict[str, Any]
    secret: str | None
    urls: dict[str, str]
    created_at: datetime
    updated_at: datetime
