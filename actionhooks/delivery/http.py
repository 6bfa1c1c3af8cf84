"""HTTP delivery: a JSON array of events per POST, or one event per GET for receivers that only take GET.

Every request carries the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
`webhook-signature`) and `X-Hook-Id`. `webhook-id` is the batch id, the same on every retry of a
batch, so receivers can drop duplicates (delivery is at least once).

GET mode: the event's top-level fields become query parameters, added to the URL's own query (an
event field wins over a URL parameter of the same name); strings go as they are, booleans as
`true`/`false`, null as an empty value, numbers, objects and arrays as compact JSON. A URL over
8192 bytes fails with PayloadError; it is never truncated. There is no body to sign, so the
signature covers the event as compact JSON with sorted keys (orjson OPT_SORT_KEYS; no spaces):
a receiver that wants to verify rebuilds that JSON from the event. When a GET batch holds more than
one event, each request's `webhook-id` is `<batch id>.<index>`.

The POST body is `Batch.body`: for the drain's batches the JSON array exactly as stored, sent
without decoding and re-encoding it. `Receipt.payload` is what was sent: for POST the list of
events the body encodes when the batch was made from them (POST /hooks/{id}/test; the drain never
reads it, so its stored arrays are not decoded for it: None); for GET the list of the full URLs
requested. The receiver's answer is read up to 64 KB (streamed, never
all of it), matched against `success_regex` and kept as a 2 KB excerpt.

One httpx transport per hook, shared by the worker's threads: keep-alive, no proxies (the SSRF
guard must see the real target), no redirects (a 3xx is a rejection; following one would let a
public receiver bounce us to a private address), no cookies kept. Deliveries go straight to the
transport (httpx.HTTPTransport over httpcore's pool, its connections framed by http.client,
delivery/http1.py): httpx.Client's layer (redirects, cookies, auth flows, event hooks) cost as
much CPU per request as the exchange itself, which with one event per request was the engine's
limit. The token endpoint is reached through an httpx.Client on the same transport.

OAuth2 client credentials (`auth.type` "oauth2_client_credentials"): each request carries the hook's
cached bearer token (delivery/oauth2.py); a 401 fetches a new token once and the request is sent once
more with it. A second 401 is an ordinary rejection (retried later like any other).

One deadline per attempt: HOOK_HTTP_TIMEOUT_SEC from the start of `send` to the last byte read,
whatever the receiver does. httpx's timeouts are per phase and per socket operation (a receiver
that trickles its headers or body a byte at a time resets them forever), so the network streams
under the client are wrapped (`DeadlineBackend`): every connect, TLS handshake, write and read is
given at most the time left until the deadline of the attempt running on that thread, and fails
with a timeout once it has passed.
"""

from __future__ import annotations

import base64
import email.utils
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC
from typing import Any, ClassVar

import httpcore
import httpx

from actionhooks import __version__
from actionhooks.delivery import wire
from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import (
    BasicAuth,
    BearerAuth,
    HttpDelivery,
    OAuth2ClientCredentials,
    success_pattern,
)
from actionhooks.delivery.errormap import Case, ErrorMap
from actionhooks.delivery.oauth2 import TokenSource
from actionhooks.delivery.signing import sign
from actionhooks.delivery.ssrf import http_transport
from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["MAX_URL_BYTES", "HttpTransport"]

MAX_URL_BYTES = 8192
READ_LIMIT = 64 * 1024
EXCERPT_CHARS = 2048
USER_AGENT = f"actionhooks/{__version__}"
# What httpx.Client would add; requests go straight to its transport (see `_request`).
BASE_HEADERS = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}
# Up to 16 worker threads (worker/runtime.py) share one pool; keep-alive expires before the usual
# 5 s server idle timeout (uvicorn, Node), so we rarely send on a connection the receiver is closing.
LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=4.0)
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# httpx's exceptions (it has mapped httpcore's, the SSRF guard's unresolvable name among them) →
# ours. TargetForbidden from the guard passes through httpx untouched.
_ERRORS = ErrorMap(
    Case(httpx.TimeoutException, TargetUnreachable, "{where}: no answer within {timeout:g}s ({exc!r})"),
    Case(httpx.TransportError, TargetUnreachable, "{where}: {detail}"),  # connect, TLS, DNS, a dropped connection
    Case(httpx.DecodingError, TargetRejected, "{where}: answer body cannot be decoded: {exc}"),
)


class HttpTransport(Transport[HttpDelivery]):
    """Delivers batches to an HTTP endpoint; one `send` is one request (one per event in GET mode)."""

    type: ClassVar[str] = "http"

    def __init__(self, config: HttpDelivery, settings: Settings) -> None:
        super().__init__(config, settings)
        self._url = httpx.URL(str(config.url))
        # Errors end up in the attempts log: name the endpoint without its query or credentials.
        self._where = f"{config.method} {self._url.scheme}://{self._url.netloc.decode()}{self._url.path}"
        self._success = success_pattern(config.success_regex) if config.success_regex else None
        self._permanent = frozenset(settings.HOOK_PERMANENT_STATUS_CODES)
        self._timeout = settings.HOOK_HTTP_TIMEOUT_SEC
        self._headers = {**BASE_HEADERS, **config.headers, **_auth_headers(config)}
        # As httpx.Client does: the URL's userinfo is sent as Basic auth, over any other Authorization.
        self._userinfo = _basic(self._url.username, self._url.password) if self._url.userinfo else {}
        allow_private = settings.HOOK_ALLOW_PRIVATE_TARGETS
        self._transport = http_transport(LIMITS, allow_private=allow_private, wrap=DeadlineBackend)
        self._client = httpx.Client(
            transport=self._transport,
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )
        # The token endpoint is reached through the same guarded client as the receiver.
        self._tokens = (
            TokenSource(config.auth, self._client, self._timeout)
            if isinstance(config.auth, OAuth2ClientCredentials)
            else None
        )

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    def send(self, batch: Batch) -> Receipt:
        with attempt_deadline(time.monotonic() + self._timeout):
            if self.config.method == "GET":
                return self._send_get(batch)
            return self._send_post(batch)

    def _send_post(self, batch: Batch) -> Receipt:
        body = batch.body
        headers = self._signed(batch, batch.batch_id, body)
        headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        status, text = self._call("POST", self._url, headers, body)
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            status_code=status,
            response_excerpt=wire.excerpt(text, EXCERPT_CHARS),
            payload=batch.known_events(),
        )

    def close(self) -> None:
        self._client.close()

    def _send_get(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        urls: list[str] = []
        status, text = 0, ""
        for index, event in enumerate(batch.events):
            try:
                url = self._query_url(event, index)
                msg_id = batch.batch_id if batch.n_events == 1 else f"{batch.batch_id}.{index}"
                headers = self._signed(batch, msg_id, wire.dumps(event, sort_keys=True))
                status, text = self._call("GET", url, headers, None)
            except DeliveryError as exc:
                # The events before this one did arrive: a retry resends only the rest.
                exc.delivered = frozenset(range(index))
                raise
            urls.append(str(url))
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            status_code=status,
            response_excerpt=wire.excerpt(text, EXCERPT_CHARS),
            payload=urls,
        )

    def _query_url(self, event: dict[str, Any], index: int) -> httpx.URL:
        url = self._url.copy_merge_params({name: _query_value(value) for name, value in event.items()})
        size = len(str(url).encode())
        if size > MAX_URL_BYTES:
            raise PayloadError(
                f"GET URL of event {index} is {size} bytes, over the {MAX_URL_BYTES}-byte limit; it is not "
                "truncated: send fewer fields (custom_data, include_content) or use POST"
            )
        return url

    def _signed(self, batch: Batch, msg_id: str, signed_body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        return {
            **self._headers,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.config.signing_secret, msg_id, timestamp, signed_body),
            "X-Hook-Id": str(batch.hook_id),
        }

    def _call(self, method: str, url: httpx.URL, headers: dict[str, str], body: bytes | None) -> tuple[int, str]:
        """`_request` with the hook's OAuth2 token, if it has one: one new token and one more try on a 401."""
        if self._tokens is None:
            return self._request(method, url, headers, body)
        token = self._tokens.get()
        try:
            return self._request(method, url, {**headers, "Authorization": f"Bearer {token}"}, body)
        except TargetRejected as exc:
            if exc.status_code != 401:
                raise
        # Revoked, or expired before expires_in said: unless another batch already renewed it, fetch one.
        token = self._tokens.get(stale=token)
        return self._request(method, url, {**headers, "Authorization": f"Bearer {token}"}, body)

    def _request(
        self, method: str, url: httpx.URL, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, str]:
        """One request; the status and the first READ_LIMIT bytes of the answer, or a DeliveryError."""
        # The pool wait too ends at the attempt's deadline; the streams enforce it for the rest.
        timeout = max(_left(), 0.001)
        if self._userinfo:
            headers = {**headers, **self._userinfo}
        request = httpx.Request(method, url, headers=headers, content=body, extensions={
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}})
        try:
            response = self._transport.handle_request(request)
            response.request = request
            try:
                text = _read_capped(response)
            except httpx.DecodingError as exc:  # the one failure with a status to report
                raise self._error(exc, response.status_code) from exc
            finally:
                response.close()
        except _ERRORS.caught as exc:
            raise self._error(exc) from exc
        if response.is_success:
            if self._success is not None and not self._success.search(text):
                raise TargetRejected(
                    f"{self._where}: answered {response.status_code} but the body does not match "
                    f"success_regex {self._success.pattern!r}: {wire.excerpt(text, 200)!r}",
                    status_code=response.status_code,
                    retryable=True,
                )
            return response.status_code, text
        raise self._rejection(response, text)

    def _error(self, exc: BaseException, status_code: int | None = None) -> DeliveryError:
        detail = str(exc) or type(exc).__name__
        return _ERRORS.error(exc, status_code=status_code, where=self._where, timeout=self._timeout, detail=detail)

    def _rejection(self, response: httpx.Response, text: str) -> TargetRejected:
        status = response.status_code
        if response.is_redirect:
            what = f"redirect to {response.headers.get('Location', '?')!r}, which is not followed"
        else:
            what = wire.excerpt(text, 200)
        retry_after = (
            _retry_after(response.headers.get("Retry-After")) if status in _RETRY_AFTER_STATUSES else None
        )
        return TargetRejected(
            f"{self._where}: answered {status} {response.reason_phrase}: {what}",
            status_code=status,
            retry_after=retry_after,
            retryable=status not in self._permanent,
        )


def _auth_headers(config: HttpDelivery) -> dict[str, str]:
    auth = config.auth
    if isinstance(auth, BasicAuth):
        return _basic(auth.username, auth.password)
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token}"}
    return {}


def _basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def _query_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return wire.dumps(value).decode()  # true/false, numbers, objects and arrays as JSON


def _read_capped(response: httpx.Response) -> str:
    """The first READ_LIMIT bytes of the body (a receiver that trickles past the deadline is cut by
    the stream: ReadTimeout)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= READ_LIMIT:
            break
    body = b"".join(chunks)[:READ_LIMIT]
    try:
        return body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name in Content-Type
        return body.decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


_deadline: ContextVar[float | None] = ContextVar("actionhooks_attempt_deadline", default=None)
WRITE_CHUNK = 16 * 1024  # a write is split so a receiver that reads slowly meets the deadline too


@contextmanager
def attempt_deadline(deadline: float) -> Iterator[None]:
    """Network I/O of this thread (context) inside the block ends by `deadline` (time.monotonic)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def _left() -> float:
    deadline = _deadline.get()
    return float("inf") if deadline is None else deadline - time.monotonic()


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` cut to the time left before the attempt's deadline; `error` once it has passed."""
    left = _left()
    if left == float("inf"):
        return timeout
    if left <= 0:
        raise error("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), WRITE_CHUNK):
            self._stream.write(bytes(view[start : start + WRITE_CHUNK]), _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps a network backend so its connections honour the attempt's deadline (DeadlineStream)."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(  # type: ignore[override]  # the options pass through as httpcore gives them
        self, host: str, port: int, timeout: float | None = None, **options: Any
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_tcp(host, port, timeout=bounded, **options))

    def connect_unix_socket(  # type: ignore[override]
        self, path: str, timeout: float | None = None, **options: Any
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, timeout=bounded, **options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)
