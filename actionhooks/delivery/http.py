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
requested. The receiver's answer is read up to 64 KB (never all of it), matched against
`success_regex` and kept as a 2 KB excerpt.

One connection pool per hook (delivery/http1.py), shared by the worker's threads: keep-alive, no
proxies (the SSRF guard must see the real target), no redirects (a 3xx is a rejection; following one
would let a public receiver bounce us to a private address), no cookies kept. With one event per
request the HTTP client is the engine's limit, so the pool is ours: plain sockets and llhttp's
parser, at a third of httpx's CPU per request (bench/http_clients.py). httpx parses the URLs. The
token endpoint is reached through the same pool, so the guard and the deadline cover it too.

OAuth2 client credentials (`auth.type` "oauth2_client_credentials"): each request carries the hook's
cached bearer token (delivery/oauth2.py); a 401 fetches a new token once and the request is sent once
more with it. A second 401 is an ordinary rejection (retried later like any other).

One deadline per attempt: HOOK_HTTP_TIMEOUT_SEC from the start of `send` to the last byte read,
whatever the receiver does. Timeouts per phase or per socket operation would let a receiver that
trickles its headers or body a byte at a time reset them forever, so the pool gives every connect,
TLS handshake, write and read at most the time left until the attempt's deadline.
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import UTC
from typing import Any, ClassVar

import httpx

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
from actionhooks.delivery.http1 import (
    USER_AGENT,
    Answer,
    AnswerTimeout,
    HttpFailure,
    Pool,
    Target,
    UndecodableBody,
    basic_authorization,
    endpoint,
)
from actionhooks.delivery.oauth2 import TokenSource
from actionhooks.delivery.signing import sign
from actionhooks.delivery.ssrf import connect, connect_unguarded
from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["MAX_URL_BYTES", "HttpTransport", "new_pool"]

MAX_URL_BYTES = 8192
READ_LIMIT = 64 * 1024
EXCERPT_CHARS = 2048
BASE_HEADERS = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}
# Up to 16 worker threads (worker/runtime.py) share one pool; keep-alive expires before the usual
# 5 s server idle timeout (uvicorn, Node), so we rarely send on a connection the receiver is closing.
MAX_CONNECTIONS = 16
KEEPALIVE_EXPIRY_SEC = 4.0
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# The pool's failures → ours. TargetForbidden from the guard passes through untouched.
_ERRORS = ErrorMap(
    Case(AnswerTimeout, TargetUnreachable, "{where}: no answer within {timeout:g}s ({exc})"),
    Case(UndecodableBody, TargetRejected, "{where}: {exc}"),
    Case(HttpFailure, TargetUnreachable, "{where}: {exc}"),  # connect, TLS, DNS, a dropped or malformed answer
)


def new_pool(settings: Settings) -> Pool:
    """A connection pool for one hook's receiver (and its token endpoint), behind the SSRF guard
    unless HOOK_ALLOW_PRIVATE_TARGETS."""
    return Pool(
        connect_unguarded if settings.HOOK_ALLOW_PRIVATE_TARGETS else connect,
        max_connections=MAX_CONNECTIONS,
        keepalive_expiry=KEEPALIVE_EXPIRY_SEC,
        read_limit=READ_LIMIT,
    )


class HttpTransport(Transport[HttpDelivery]):
    """Delivers batches to an HTTP endpoint; one `send` is one request (one per event in GET mode)."""

    type: ClassVar[str] = "http"

    def __init__(self, config: HttpDelivery, settings: Settings) -> None:
        super().__init__(config, settings)
        self._url = httpx.URL(str(config.url))
        self._target = Target.of(self._url)
        self._where = f"{config.method} {endpoint(self._url)}"
        self._success = success_pattern(config.success_regex) if config.success_regex else None
        self._permanent = frozenset(settings.HOOK_PERMANENT_STATUS_CODES)
        self._timeout = settings.HOOK_HTTP_TIMEOUT_SEC
        # As httpx.Client does: the URL's userinfo is sent as Basic auth, over any other Authorization.
        userinfo = (
            {"Authorization": basic_authorization(self._url.username, self._url.password)}
            if self._url.userinfo else {}
        )
        self._headers = {**BASE_HEADERS, **config.headers, **_auth_headers(config), **userinfo}
        self._pool = new_pool(settings)
        # The token endpoint is reached through the same guarded pool as the receiver.
        self._tokens = (
            TokenSource(config.auth, self._pool, self._timeout)
            if isinstance(config.auth, OAuth2ClientCredentials)
            else None
        )

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def send(self, batch: Batch) -> Receipt:
        deadline = time.monotonic() + self._timeout  # the one deadline of this attempt
        if self.config.method == "GET":
            return self._send_get(batch, deadline)
        return self._send_post(batch, deadline)

    def _send_post(self, batch: Batch, deadline: float) -> Receipt:
        body = batch.body
        headers = self._signed(batch, batch.batch_id, body)
        headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        status, text = self._call("POST", self._target, headers, body, deadline)
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            status_code=status,
            response_excerpt=wire.excerpt(text, EXCERPT_CHARS),
            payload=batch.known_events(),
        )

    def close(self) -> None:
        self._pool.close()

    def prune(self) -> None:
        self._pool.prune()

    def _send_get(self, batch: Batch, deadline: float) -> Receipt:
        started = time.perf_counter()
        urls: list[str] = []
        status, text = 0, ""
        for index, event in enumerate(batch.events):
            try:
                url = self._query_url(event, index)
                msg_id = batch.batch_id if batch.n_events == 1 else f"{batch.batch_id}.{index}"
                headers = self._signed(batch, msg_id, wire.dumps(event, sort_keys=True))
                status, text = self._call("GET", Target.of(url), headers, None, deadline)
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

    def _call(
        self, method: str, target: Target, headers: dict[str, str], body: bytes | None, deadline: float
    ) -> tuple[int, str]:
        """`_request` with the hook's OAuth2 token, if it has one: one new token and one more try on a 401."""
        if self._tokens is None:
            return self._request(method, target, headers, body, deadline)
        token = self._tokens.get(deadline=deadline)
        try:
            return self._request(method, target, {**headers, "Authorization": f"Bearer {token}"}, body, deadline)
        except TargetRejected as exc:
            if exc.status_code != 401:
                raise
        # Revoked, or expired before expires_in said: unless another batch already renewed it, fetch one.
        token = self._tokens.get(stale=token, deadline=deadline)
        return self._request(method, target, {**headers, "Authorization": f"Bearer {token}"}, body, deadline)

    def _request(
        self, method: str, target: Target, headers: dict[str, str], body: bytes | None, deadline: float
    ) -> tuple[int, str]:
        """One request; the status and the first READ_LIMIT bytes of the answer, or a DeliveryError."""
        try:
            answer = self._pool.request(method, target, headers, body, deadline)
        except UndecodableBody as exc:  # the one failure with a status to report
            raise self._error(exc, exc.status) from exc
        except _ERRORS.caught as exc:
            raise self._error(exc) from exc
        text = answer.text()
        if answer.is_success:
            if self._success is not None and not self._success.search(text):
                raise TargetRejected(
                    f"{self._where}: answered {answer.status} but the body does not match "
                    f"success_regex {self._success.pattern!r}: {wire.excerpt(text, 200)!r}",
                    status_code=answer.status,
                    retryable=True,
                )
            return answer.status, text
        raise self._rejection(answer, text)

    def _error(self, exc: BaseException, status_code: int | None = None) -> DeliveryError:
        return _ERRORS.error(exc, status_code=status_code, where=self._where, timeout=self._timeout)

    def _rejection(self, answer: Answer, text: str) -> TargetRejected:
        status = answer.status
        if answer.is_redirect:
            what = f"redirect to {answer.headers.get('location', '?')!r}, which is not followed"
        else:
            what = wire.excerpt(text, 200)
        retry_after = (
            _retry_after(answer.headers.get("retry-after")) if status in _RETRY_AFTER_STATUSES else None
        )
        return TargetRejected(
            f"{self._where}: answered {status} {answer.reason}: {what}",
            status_code=status,
            retry_after=retry_after,
            retryable=status not in self._permanent,
        )


def _auth_headers(config: HttpDelivery) -> dict[str, str]:
    auth = config.auth
    if isinstance(auth, BasicAuth):
        return {"Authorization": basic_authorization(auth.username, auth.password)}
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token}"}
    return {}


def _query_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return wire.dumps(value).decode()  # true/false, numbers, objects and arrays as JSON


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
