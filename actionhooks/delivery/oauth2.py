"""OAuth 2.0 client credentials for HTTP receivers: one cached token per hook and worker process.

The HTTP transport of a hook (one per hook per worker process, worker/transports.py) owns one
`TokenSource`. Every batch asks it for a token; the first one fetches it from `token_url`, the
others reuse it until `REFRESH_MARGIN` before it expires. Concurrent batches that find no valid
token wait on the source's single-flight lock while one of them fetches: the only lock held across
the token request is that per-hook one, so other hooks never wait for this hook's token server.
A 401 from the receiver marks the token it was sent with as stale: the next call fetches a new one
unless another batch already did.

The token request goes through the transport's own connection pool (delivery/http1.py), so the SSRF
guard vets `token_url` exactly as it vets the receiver, and the attempt's deadline bounds it. Error
messages name the token endpoint without credentials and never include the client secret or the
token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import orjson

from actionhooks.delivery.config import OAuth2ClientCredentials
from actionhooks.delivery.http1 import (
    USER_AGENT,
    AnswerTimeout,
    HttpFailure,
    Pool,
    Target,
    basic_authorization,
    endpoint,
)
from actionhooks.errors import TargetRejected, TargetUnreachable

__all__ = ["MAX_TOKEN_CHARS", "NO_EXPIRY_SEC", "REFRESH_MARGIN_SEC", "Token", "TokenSource"]

REFRESH_MARGIN_SEC = 30.0  # a token is renewed this long before expires_in says it ends (at most 10% of its life)
NO_EXPIRY_SEC = 3600.0  # a token without expires_in is reused this long at most (or until a 401)
MAX_TOKEN_CHARS = 8192  # a longer access_token is refused (it would go into every request's header)


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    renew_at: float  # time.monotonic() after which the token is fetched again


class TokenSource:
    """The current token of one hook; thread-safe, one fetch at a time (single flight)."""

    def __init__(
        self,
        auth: OAuth2ClientCredentials,
        pool: Pool,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth
        self._pool = pool
        self._timeout = timeout
        self._clock = clock
        self._url = httpx.URL(str(auth.token_url))
        self._target = Target.of(self._url)
        self._where = f"OAuth2 token endpoint {endpoint(self._url)}"
        self._token: Token | None = None  # replaced whole (one assignment), read without the lock
        self._fetch_lock = threading.Lock()

    def get(self, stale: str | None = None, deadline: float | None = None) -> str:
        """A valid access token; `stale` is one the receiver refused (401): never returned again. A fetch
        ends by `deadline` (time.monotonic(); the attempt's), by default `timeout` from now."""
        token = self._token
        if token is not None and token.value != stale and self._clock() < token.renew_at:
            return token.value
        with self._fetch_lock:
            token = self._token  # another batch may have fetched while this one waited
            if token is not None and token.value != stale and self._clock() < token.renew_at:
                return token.value
            token = self._fetch(time.monotonic() + self._timeout if deadline is None else deadline)
            self._token = token
            return token.value

    def _fetch(self, deadline: float) -> Token:
        auth = self._auth
        form = {"grant_type": "client_credentials"}
        if auth.scope:
            form["scope"] = auth.scope
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json",
                   "Content-Type": "application/x-www-form-urlencoded"}
        if auth.client_auth == "basic":
            headers["Authorization"] = basic_authorization(auth.client_id, auth.client_secret)
        else:
            form |= {"client_id": auth.client_id, "client_secret": auth.client_secret}
        started = self._clock()
        try:
            answer = self._pool.request("POST", self._target, headers, urlencode(form).encode(), deadline)
        except AnswerTimeout as exc:
            raise TargetUnreachable(f"{self._where}: no answer within {self._timeout:g}s") from exc
        except HttpFailure as exc:
            raise TargetUnreachable(f"{self._where}: {exc}") from exc
        body = answer.body
        if not answer.is_success:
            raise TargetRejected(
                f"{self._where}: answered {answer.status} {answer.reason}: "
                f"{_error_of(body)}; no token, the batch is retried",
                status_code=answer.status,
                retryable=True,
            )
        return self._token_of(body, started)

    def _token_of(self, body: bytes, started: float) -> Token:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        value = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_CHARS or not value.isascii() \
                or not value.isprintable() or " " in value:
            raise TargetRejected(f"{self._where}: the answer has no usable access_token", retryable=True)
        token_type = data.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise TargetRejected(f"{self._where}: token_type {token_type!r} is not bearer", retryable=True)
        expires_in = data.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdecimal():
            expires_in = int(expires_in)  # some servers send a string
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
            lifetime = min(float(expires_in), 10 * 24 * 3600.0)
            lifetime -= min(REFRESH_MARGIN_SEC, lifetime / 10)
        else:
            lifetime = NO_EXPIRY_SEC
        return Token(value, started + lifetime)  # counted from the request: the server's clock started then


def _error_of(body: bytes) -> str:
    """The RFC 6749 5.2 error code of a token endpoint's refusal, short; never the request's secret."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "(no JSON error)"
    if not isinstance(data, dict):
        return "(no JSON error)"
    error = str(data.get("error", ""))[:100]
    description = str(data.get("error_description", ""))[:200]
    return f"{error} {description}".strip() or "(no error code)"
