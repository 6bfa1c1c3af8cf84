"""Delivery settings of a hook, one pydantic model per `type`, joined as a discriminated union.

Kept free of heavy imports (no httpx, pika or confluent-kafka) so the API validates hooks without
loading any transport. Secrets are write-only: `SECRET_FIELDS` lists them per type; the API shows
"***" in their place and a "***" sent back keeps the stored value (hooks/service.py does that).

Secrets follow their target (README, Security "Secrets"): each model says where it delivers with
`TARGET_FIELDS` (or by overriding `target()` when only part of a field counts, like a URL's scheme,
host and port). When a change moves a hook to another target, a secret not given again is dropped,
never carried over. Credentials that live inside ordinary fields (a URL's userinfo and key-like
query parameters, key-like header values) are masked and restored by `mask_inline` /
`restore_inline`, which a model overrides when it has such fields.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import re2
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter, field_validator

from actionhooks.delivery.signing import signing_key

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
    """Base of every delivery model; three class-level tuples say what its fields are:

    - SECRET_FIELDS: write-only (masked as "***" in answers, kept when "***" is sent back);
    - TARGET_FIELDS: where the hook delivers (a change of any of them is a new target, for the
      "secrets follow their target" rule, README Security "Secrets");
    - TEMPLATE_FIELDS: templates rendered per event, compiled at save (422 at the field).
    """

    model_config = ConfigDict(extra="forbid")
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ()
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ()

    def target(self) -> tuple[object, ...]:
        """Where this config delivers; a stored secret is kept only while this stays the same."""
        return tuple(getattr(self, name) for name in self.TARGET_FIELDS)

    def mask_inline(self, data: dict[str, Any]) -> None:
        """Mask credentials inside ordinary fields of `data` (this model as JSON): the URLs among the target
        fields, here and in nested models (an OAuth2 auth's token_url)."""
        for name, urls in self._urls(data):
            masked = [mask_url(url) for url in urls]
            data[name] = masked if isinstance(data[name], list) else masked[0]
        for name, child in self._nested(data):
            child.mask_inline(data[name])

    def restore_inline(self, data: dict[str, Any], stored: _Strict | None) -> list[tuple[tuple[str, ...], str]]:
        """Put back into `data` the inline credentials a client echoed masked; (path, message) for those it cannot.

        A URL sent back exactly as the API shows it keeps the stored one (same credentials, same target).
        """
        errors: list[tuple[tuple[str, ...], str]] = []
        for name, child in self._nested(data):
            old_child = getattr(stored, name, None) if type(stored) is type(self) else None
            errors += [((name, *path), message) for path, message in
                       child.restore_inline(data[name], old_child if isinstance(old_child, _Strict) else None)]
        for name, urls in self._urls(data):
            if not any(MASK in url for url in urls):
                continue
            old = getattr(stored, name, None) if type(stored) is type(self) else None
            old_urls = [str(u) for u in old] if isinstance(old, list) else [str(old)] if old is not None else []
            if [mask_url(url) for url in old_urls] == urls:
                data[name] = old_urls if isinstance(data[name], list) else old_urls[0]
            else:
                errors.append(((name,), f'"{MASK}" in a URL keeps stored credentials only for the same URL: '
                                        "send them again"))
        return errors

    def drop_inline(self, data: dict[str, Any]) -> None:
        """Remove from `data` the credentials inside ordinary fields (a clone gets none)."""
        for name, urls in self._urls(data):
            stripped = [_without_credentials(url) for url in urls]
            data[name] = stripped if isinstance(data[name], list) else stripped[0]
        for name, child in self._nested(data):
            child.drop_inline(data[name])

    def _nested(self, data: dict[str, Any]) -> list[tuple[str, _Strict]]:
        """(field, its model) for each field holding a nested delivery model that `data` has as an object."""
        return [(name, value) for name in type(self).model_fields
                if isinstance(value := getattr(self, name), _Strict) and isinstance(data.get(name), dict)]

    def _urls(self, data: dict[str, Any]) -> list[tuple[str, list[str]]]:
        """(field, its URLs) for each target field holding URLs (a URL, or a list of them like NATS servers)."""
        found = []
        for name in self.TARGET_FIELDS:
            value = data.get(name)
            urls = value if isinstance(value, list) else [value]
            if urls and all(isinstance(url, str) and "://" in url for url in urls):
                found.append((name, list(urls)))
        return found


def _without_credentials(url: str) -> str:
    """`url` without userinfo and without key-like query parameters."""
    parts = urlsplit(mask_url(url))
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(pair for pair in parts.query.split("&") if pair and not pair.endswith("=" + MASK))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# How much of its limit a rate-limited hook may spend at once, in seconds of its rate: a token bucket
# this deep adds at most 2% to any 10-second window. An events_per_sec hook's batches hold at most
# half of it (worker/batching.py): a batch is sent whole, and a drain woken a little late still
# finds the bucket able to pay for more than one (measured: with batches the size of the whole
# bucket, 50 events/s delivered only 43/s).
RATE_BURST_SEC = 0.2
# The bucket refills at this share of the limit. The budget is spent when a batch is claimed, and a
# loaded machine can hold sends back and then let them out together, so a receiver's 10-second
# window can see up to a second of extra claims (measured at 50/s on a shared 2-core machine:
# 545 events in the busiest window with a 0.3 s bucket at the full rate). 2% less refill leaves
# that second inside what a limit promises: over any 10-second window, at most 10% over the rate.
RATE_REFILL_SHARE = 0.98


class EventRate(_Strict):
    """`{"events_per_sec": N}`: events per second across all of the hook's batches and workers."""

    events_per_sec: float = Field(ge=1, le=1_000_000)

    @property
    def per_sec(self) -> float:
        return self.events_per_sec * RATE_REFILL_SHARE

    def cost(self, n_events: int) -> float:
        return float(n_events)

    @property
    def burst(self) -> float:
        return max(1.0, self.per_sec * RATE_BURST_SEC)


class RequestRate(_Strict):
    """`{"requests_per_sec": N}` (HTTP only): requests, whatever each batch holds."""

    requests_per_sec: float = Field(ge=1, le=100_000)

    @property
    def per_sec(self) -> float:
        return self.requests_per_sec * RATE_REFILL_SHARE

    def cost(self, n_events: int) -> float:
        return 1.0

    @property
    def burst(self) -> float:
        return max(1.0, self.per_sec * RATE_BURST_SEC)


class _Limited(_Strict):
    """A delivery that takes `rate_limit` (README, "Rate limits"): every type but HTTP counts events."""

    rate_limit: EventRate | None = None


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


_SCOPE_TOKEN = r"[\x21\x23-\x5b\x5d-\x7e]+"  # RFC 6749 3.3 scope-token; tokens separated by one space


class OAuth2ClientCredentials(_Strict):
    """OAuth 2.0 client credentials (RFC 6749 4.4): the engine fetches a bearer token from `token_url`.

    The token is cached per hook and worker process until shortly before it expires and fetched again
    once on a 401 (delivery/oauth2.py). `token_url` goes through the SSRF guard like the receiver's
    URL; `client_secret` is write-only and follows `token_url` (a new token_url drops it).
    """

    type: Literal["oauth2_client_credentials"]
    token_url: HttpUrl
    client_id: str = Field(min_length=1, max_length=500, pattern=r"^[\x20-\x7e]+$")
    client_secret: str = Field(min_length=1, max_length=2000, pattern=r"^[\x20-\x7e]+$")
    scope: str | None = Field(None, max_length=1000, pattern=rf"^{_SCOPE_TOKEN}( {_SCOPE_TOKEN})*$")
    client_auth: Literal["basic", "body"] = Field(
        "basic", description="client_secret_basic (Authorization header) or client_secret_post (form body)"
    )
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("client_secret",)
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("token_url",)


HttpAuth = Annotated[NoAuth | BasicAuth | BearerAuth | OAuth2ClientCredentials, Field(discriminator="type")]


class HttpDelivery(_Limited):
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
    rate_limit: EventRate | RequestRate | None = None
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("signing_secret",)
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("url",)  # its scheme, host and port

    def target(self) -> tuple[object, ...]:
        return (self.url.scheme, self.url.host, self.url.port)

    def mask_inline(self, data: dict[str, Any]) -> None:
        super().mask_inline(data)
        data["headers"] = {name: MASK if secret_name(name) else value for name, value in self.headers.items()}

    def drop_inline(self, data: dict[str, Any]) -> None:
        super().drop_inline(data)
        data["headers"] = {name: value for name, value in self.headers.items() if not secret_name(name)}

    def restore_inline(self, data: dict[str, Any], stored: _Strict | None) -> list[tuple[tuple[str, ...], str]]:
        errors = super().restore_inline(data, stored)
        old = stored if isinstance(stored, HttpDelivery) and stored.target() == self.target() else None
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
        if secret != MASK:
            signing_key(secret)  # the signer's own reader: what saves is what signs
        return secret


class _AmqpTarget(_Limited):
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


class KafkaDelivery(_Limited):
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
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("key",)

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


def _split_server(entry: str, default_port: int = 9092) -> tuple[str, int]:
    """(host, port) of "host:port", "[v6]:port" or "host" (default port), optionally after "proto://"; -1 if bad."""
    address = entry.strip().rpartition("://")[2]
    host, colon, port = address.rpartition(":")
    if not colon or address.endswith("]") or (":" in host and not host.startswith("[")):
        host, port = address, str(default_port)  # no port: "host", "[v6]" or a bare IPv6 address
    host = host.removeprefix("[").removesuffix("]")
    return host, int(port) if port.isdecimal() else -1


# Templates of the destinations below: rendered per event from the event alone (no catalog), so
# catalog names (campaign_name...) render empty; each is compiled at save (hooks/service.py, 422 at
# its field) and bounded by TEMPLATE_MAX_OUTPUT_CHARS like custom_data values.
_TEMPLATE = 1000


_HOST = r"^([0-9A-Fa-f:]+:[0-9A-Fa-f:.]*|[A-Za-z0-9._-]+)$"  # a name, an IPv4 or a bare IPv6 address


class RedisStreamDelivery(_Limited):
    """One XADD per event to a Redis stream: fields event (JSON), event_id, hook_id, event_type."""

    type: Literal["redis_stream"]
    url: str = Field(min_length=1, max_length=2000, description="redis:// or rediss:// URL, with the database number")
    stream: str = Field("actionhooks.{{event_type}}", min_length=1, max_length=_TEMPLATE, description="template")
    maxlen: int | None = Field(None, ge=1, le=10**12, description="approximate MAXLEN trim (XADD MAXLEN ~)")
    username: str | None = Field(None, max_length=255, description="ACL user name (Redis 6+)")
    password: str | None = Field(None, max_length=500, description="AUTH password (kept out of `url`)")
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("url",)
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("stream",)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("must be a redis:// or rediss:// URL")
        if not parts.hostname:
            raise ValueError("must name a host (redis://host:6379/0)")
        if parts.username or parts.password:
            raise ValueError("credentials go in `username` and `password` (write-only), not in the URL")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        if parts.path not in ("", "/") and not parts.path[1:].isdecimal():
            raise ValueError("the path is the database number (redis://host:6379/0)")
        return url

    def address(self) -> tuple[str, int, int, bool]:
        """(host, port, database, tls) of `url`."""
        parts = urlsplit(self.url)
        db = int(parts.path[1:]) if parts.path[1:].isdecimal() else 0
        return parts.hostname or "", parts.port or 6379, db, parts.scheme == "rediss"


class NatsDelivery(_Limited):
    """JetStream publish per event, Nats-Msg-Id = event id, each acknowledged by the stream."""

    type: Literal["nats"]
    servers: list[str] = Field(min_length=1, max_length=10, description="nats://host:port or host:port")
    subject: str = Field("actionhooks.{{list_id}}.{{event_type}}", min_length=1, max_length=_TEMPLATE)
    jetstream: Literal[True] = Field(True, description="only JetStream: core NATS publishes are not acknowledged")
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(None, max_length=500)
    token: str | None = Field(None, max_length=4000)
    tls: bool = False
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("servers",)
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password", "token")
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("subject",)

    @field_validator("servers")
    @classmethod
    def _host_ports(cls, servers: list[str]) -> list[str]:
        for entry in servers:
            scheme, _, rest = entry.rpartition("://")
            if scheme not in ("", "nats", "tls"):
                raise ValueError(f"{entry!r}: the scheme must be nats:// or tls://")
            if "@" in rest or "/" in rest:
                raise ValueError(f"{entry!r} must be host:port (credentials go in username/password/token)")
            host, port = _split_server(rest, 4222)
            if not host or not 1 <= port <= 65535:
                raise ValueError(f"{entry!r} is not host:port")
        return servers

    def addresses(self) -> list[tuple[str, int]]:
        return [_split_server(entry.rpartition("://")[2], 4222) for entry in self.servers]


class MqttDelivery(_Limited):
    """One PUBLISH per event at QoS 1 (MQTT 5 user properties event_id, hook_id, event_type), PUBACK awaited."""

    type: Literal["mqtt"]
    host: str = Field(min_length=1, max_length=255, pattern=_HOST, description="a name or an IP address")
    port: int = Field(1883, ge=1, le=65535)
    topic: str = Field("actionhooks/{{list_id}}/{{event_type}}", min_length=1, max_length=_TEMPLATE)
    qos: Literal[1] = Field(1, description="QoS 1: each message is acknowledged (PUBACK)")
    protocol: Literal["5", "3.1.1"] = Field("5", description="3.1.1 has no user properties: identity in the body")
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(None, max_length=500)
    tls: bool = False
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("host", "port")
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("topic",)


_AWS_REGION = r"^[a-z]{2}(-[a-z0-9]+)+-\d+$"


class _AwsTarget(_Limited):
    region: str = Field(min_length=1, max_length=50, pattern=_AWS_REGION, description="e.g. eu-west-1")
    access_key_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9]+$")
    secret_access_key: str = Field(min_length=1, max_length=500)
    endpoint_url: HttpUrl | None = Field(None, description="another endpoint than AWS's (MinIO, LocalStack...)")
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("secret_access_key",)


class SqsDelivery(_AwsTarget):
    """SendMessageBatch of up to 10 messages; FIFO queues get MessageDeduplicationId = event id."""

    type: Literal["sqs"]
    queue_url: HttpUrl
    message_group_id: str = Field("{{profile_id}}", min_length=1, max_length=_TEMPLATE, description="FIFO only")
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("queue_url", "region", "endpoint_url")
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("message_group_id",)

    @property
    def fifo(self) -> bool:
        return (self.queue_url.path or "").endswith(".fifo")


class S3Delivery(_AwsTarget):
    """One gzip JSON Lines object per batch: <prefix>/<yyyy>/<mm>/<dd>/<batch id>.jsonl.gz (PutObject)."""

    type: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = Field("actionhooks", max_length=_TEMPLATE, description="template; '' = the bucket's root")
    # An archive wants few large objects: events wait up to batch_timeout_sec for others, as for HTTP.
    max_batch_size: int = Field(1000, ge=1, le=10_000, description="events per object at most")
    batch_timeout_sec: float = Field(60, ge=0, le=3600, description="how long the first event waits for others")
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("bucket", "region", "endpoint_url")
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("prefix",)


DeliveryConfig = Annotated[
    HttpDelivery
    | RabbitMQQueueDelivery
    | RabbitMQExchangeDelivery
    | KafkaDelivery
    | RedisStreamDelivery
    | NatsDelivery
    | MqttDelivery
    | SqsDelivery
    | S3Delivery,
    Field(discriminator="type"),
]

_DELIVERY_ADAPTER: TypeAdapter[Any] = TypeAdapter(DeliveryConfig)


def parse_delivery(data: Any) -> Any:
    """A delivery config on its own (HookSpec validates the one inside a hook): its model, or ValidationError."""
    return _DELIVERY_ADAPTER.validate_python(data)
