"""Delivery settings of a hook, one pydantic model per `type`, joined as a discriminated union.

Kept free of heavy imports (no httpx, pika or confluent-kafka) so the API validates hooks without
loading any transport. Secrets are write-only: `SECRET_FIELDS` lists them per type; the API shows
"***" in their place and a "***" sent back keeps the stored value (hooks/service.py does that).

Secrets follow their target (delivery-control.md): each model says where it delivers with
`TARGET_FIELDS` (or by overriding `target()` when only part of a field counts, like a URL's scheme,
host and port). When a change moves a hook to another target, a secret not given again is dropped,
never carried over. Credentials that live inside ordinary fields (a URL's userinfo and key-like
query parameters, key-like header values) are masked and restored by `mask_inline` /
`restore_inline`, which a model overrides when it has such fields.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import re2
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

MASK = "***"

# Headers a user may not set: hop-by-hop, framing and the ones the engine owns (Altcraft's list plus ours).
FORBIDDEN_HEADERS = frozenset(
    h.lower()
    for h in (
        "Host",
        "Connection",
        "Keep-Alive",
        "Accept-Encoding",
        "Content-Length",
        "Transfer-Encoding",
        "Trailer",
        "TE",
        "Upgrade",
        "Date",
        "Location",
        "Server",
        "Proxy-Authorization",
        "Proxy-Connection",
        "Content-Type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-Hook-Id",
    )
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# What httpx can put on the wire: visible ASCII, space and tab (anything else failed at send time).
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the user's 422, not a line on our stderr
_RE2_OPTIONS.max_mem = 8 << 20  # a pattern whose program needs more is refused at save


def success_pattern(pattern: str) -> re2._Regexp:
    """`success_regex` compiled by RE2: matching is linear in the answer's length, whatever the pattern.

    Backreferences and lookarounds (what makes backtracking exponential) do not exist in RE2: such
    a pattern is refused at save (ValueError -> 422), never run by a backtracking engine instead.
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        message = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a regular expression RE2 can run (linear-time, no backreferences or lookarounds): "
                         f"{message}") from None


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# Names of query parameters and headers whose values are credentials (matched case-insensitively, in part).
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|sig|auth|credential|session|cookie", re.IGNORECASE)


def secret_name(name: str) -> bool:
    """Whether a query parameter or header called `name` carries a credential (its value is masked)."""
    return bool(_SECRET_NAME.search(name))


def mask_url(url: str) -> str:
    """`url` with its userinfo password and the values of key-like query parameters replaced by MASK."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}{':' + MASK if colon else ''}@{hostport}" if colon else f"{MASK}@{hostport}"
    query = "&".join(
        f"{name}={MASK}" if secret_name(unquote_plus(name)) and sep else f"{name}{sep}{value}"
        for name, sep, value in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_USERINFO_IN_TEXT = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]*@")
_SECRET_PARAM_IN_TEXT = re.compile(
    r"([?&;][^=&\s#]*(?:key|token|secret|passw|pwd|sig|auth|credential|session)[^=&\s#]*=)[^&\s#'\"]*", re.IGNORECASE
)


def redact(text: str) -> str:
    """`text` (an error message, a log line) with credentials of any URL in it replaced by MASK."""
    return _SECRET_PARAM_IN_TEXT.sub(rf"\1{MASK}", _USERINFO_IN_TEXT.sub(rf"\1{MASK}@", text))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ()

    def target(self) -> tuple[object, ...]:
        """Where this config delivers; a stored secret is kept only while this stays the same."""
        return tuple(getattr(self, name) for name in self.TARGET_FIELDS)

    def mask_inline(self, data: dict[str, Any]) -> None:
        """Mask credentials inside ordinary fields of `data` (this model as JSON); none by default."""

    def restore_inline(self, data: dict[str, Any], stored: _Strict | None) -> list[tuple[tuple[str, ...], str]]:
        """Put back into `data` the inline credentials a client echoed masked; (path, message) for those it cannot."""
        return []

    def drop_inline(self, data: dict[str, Any]) -> None:
        """Remove from `data` the credentials inside ordinary fields (a clone gets none); none by default."""


class NoAuth(_Strict):
    type: Literal["none"] = "none"


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=500, pattern=r"^[^:]*$", description="no ':' (RFC 7617)")
    password: str = Field(max_length=500)
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: str = Field(min_length=1, max_length=4000, pattern=r"^[\x21-\x7e]+$")  # sent in a header
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("token",)


HttpAuth = Annotated[NoAuth | BasicAuth | BearerAuth, Field(discriminator="type")]


class HttpDelivery(_Strict):
    """JSON batches over HTTP POST, or one event per GET with query parameters."""

    type: Literal["http"]
    url: HttpUrl
    method: Literal["POST", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    max_batch_size: int = Field(100, ge=1, le=10_000)
    batch_timeout_sec: float = Field(5, ge=0, le=3600)
    success_regex: str | None = Field(None, max_length=1000)
    signing_secret: str = Field(default_factory=new_signing_secret, max_length=200)
    auth: HttpAuth = Field(default_factory=NoAuth)
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("signing_secret",)
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("url",)  # its scheme, host and port

    def target(self) -> tuple[object, ...]:
        return (self.url.scheme, self.url.host, self.url.port)

    def mask_inline(self, data: dict[str, Any]) -> None:
        data["url"] = mask_url(str(self.url))
        data["headers"] = {name: MASK if secret_name(name) else value for name, value in self.headers.items()}

    def drop_inline(self, data: dict[str, Any]) -> None:
        parts = urlsplit(mask_url(str(self.url)))
        netloc = parts.netloc.rpartition("@")[2]
        query = "&".join(pair for pair in parts.query.split("&") if pair and not pair.endswith("=" + MASK))
        data["url"] = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        data["headers"] = {name: value for name, value in self.headers.items() if not secret_name(name)}

    def restore_inline(self, data: dict[str, Any], stored: _Strict | None) -> list[tuple[tuple[str, ...], str]]:
        errors: list[tuple[tuple[str, ...], str]] = []
        old = stored if isinstance(stored, HttpDelivery) and stored.target() == self.target() else None
        if MASK in data["url"]:
            if old is not None and mask_url(str(old.url)) == data["url"]:
                data["url"] = str(old.url)  # the URL echoed as the API showed it: same credentials
            else:
                errors.append((("url",), f'"{MASK}" in the URL keeps stored credentials only for the same URL: '
                                         "send them again"))
        old_headers = {name.lower(): value for name, value in old.headers.items()} if old is not None else {}
        for name, value in self.headers.items():
            if value != MASK:
                continue
            if name.lower() in old_headers:
                data["headers"][name] = old_headers[name.lower()]
            else:
                errors.append((("headers", name), f'"{MASK}" keeps a stored header value only for the same target: '
                                                  "send the value itself"))
        return errors

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP token")
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(f"header {name!r} is set by the engine or the connection and cannot be overridden")
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} value must not contain line breaks")
            if not _HEADER_VALUE.match(value):
                raise ValueError(f"header {name!r} value must be printable ASCII (no control characters)")
        return headers

    @field_validator("success_regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            success_pattern(pattern)
        return pattern

    @field_validator("signing_secret")
    @classmethod
    def _whsec(cls, secret: str) -> str:
        if secret == MASK:
            return secret
        if not secret.startswith("whsec_"):
            raise ValueError("must start with 'whsec_' (Standard Webhooks secret)")
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("must be 'whsec_' followed by base64 (Standard Webhooks secret)") from None
        if not key:
            raise ValueError("the key after 'whsec_' is empty")
        return secret


class _AmqpTarget(_Strict):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(5672, ge=1, le=65535)
    username: str = Field("guest", max_length=255)
    password: str = Field("guest", max_length=500)
    vhost: str = Field("/", min_length=1, max_length=255)
    tls: bool = False
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("host", "port", "vhost", "tls")


class RabbitMQQueueDelivery(_AmqpTarget):
    """One persistent message per event to the default exchange, routing key = queue."""

    type: Literal["rabbitmq_queue"]
    queue: str = Field("", max_length=255, description='"" = the event\'s event_type')


class RabbitMQExchangeDelivery(_AmqpTarget):
    """One persistent message per event to an exchange, routing key `<list_id>.<event_type>`."""

    type: Literal["rabbitmq_exchange"]
    exchange: str = Field(min_length=1, max_length=255)
    exchange_type: Literal["direct", "topic"] = "direct"
    durable: bool = True
    auto_delete: bool = False


class KafkaDelivery(_Strict):
    """One message per event to a Kafka topic from an idempotent producer (acks=all)."""

    type: Literal["kafka"]
    bootstrap_servers: str = Field(min_length=1, max_length=2000)
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    key: str = Field("{{profile_id}}", max_length=1000, description="template of the message key")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = Field(None, max_length=500)
    sasl_password: str | None = Field(None, max_length=500)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("sasl_password",)
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("bootstrap_servers", "security_protocol")

    def target(self) -> tuple[object, ...]:
        return (self.security_protocol, tuple(sorted(self.servers())))

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, servers: str) -> str:
        for entry in servers.split(","):
            host, port = _split_server(entry)
            if not host or not 1 <= port <= 65535:
                raise ValueError(f"{entry.strip()!r} is not host:port (a comma-separated list, e.g. k1:9092,k2:9092)")
        return servers

    def servers(self) -> list[tuple[str, int]]:
        """(host, port) of each bootstrap server, for checks made before librdkafka connects (the SSRF guard)."""
        return [_split_server(entry) for entry in self.bootstrap_servers.split(",")]


def _split_server(entry: str) -> tuple[str, int]:
    """(host, port) of "host:port", "[v6]:port" or "host" (port 9092), with an optional "proto://"; port -1 if bad."""
    address = entry.strip().rpartition("://")[2]
    host, colon, port = address.rpartition(":")
    if not colon or address.endswith("]") or (":" in host and not host.startswith("[")):
        host, port = address, "9092"  # no port: "host", "[v6]" or a bare IPv6 address
    host = host.removeprefix("[").removesuffix("]")
    return host, int(port) if port.isdecimal() else -1


DeliveryConfig = Annotated[
    HttpDelivery | RabbitMQQueueDelivery | RabbitMQExchangeDelivery | KafkaDelivery, Field(discriminator="type")
]
