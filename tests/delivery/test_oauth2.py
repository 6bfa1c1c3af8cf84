"""OAuth2 client credentials against a real token server and a real receiver on loopback."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import closing
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
import pytest
from pydantic import ValidationError

from actionhooks.delivery.base import Batch
from actionhooks.delivery.config import HttpDelivery, OAuth2ClientCredentials
from actionhooks.delivery.http import HttpTransport, new_pool
from actionhooks.delivery.oauth2 import TokenSource
from actionhooks.errors import TargetForbidden, TargetRejected
from actionhooks.settings import Settings
from tests.support.receiver import Receiver, Reply

E = TypeVar("E", bound=Exception)
PRIVATE = Settings(HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_HTTP_TIMEOUT_SEC=5)
SECRET = "s3cr3t-client-secret"


def token_reply(value: str, expires_in: Any = 3600) -> Reply:
    return Reply(body=orjson.dumps({"access_token": value, "token_type": "Bearer", "expires_in": expires_in}),
                 headers={"Content-Type": "application/json"})


@pytest.fixture
def token_server() -> Iterator[Receiver]:
    server = Receiver()
    server.default = token_reply("tok-A")
    yield server
    server.close()


def oauth2(token_server: Receiver, **extra: Any) -> dict[str, Any]:
    return {"type": "oauth2_client_credentials", "token_url": f"http://127.0.0.1:{token_server.port}/token",
            "client_id": "engine", "client_secret": SECRET, "scope": "events:write", **extra}


def transport(url: str, auth: dict[str, Any], settings: Settings = PRIVATE) -> HttpTransport:
    return HttpTransport(HttpDelivery.model_validate({"type": "http", "url": url, "auth": auth}), settings)


def batch(n: int) -> Batch:
    return Batch(hook_id=7, batch_id=f"b-{n}", attempt=1, events=[{"n": n}])


def failure(http: HttpTransport, error: type[E]) -> E:
    """The error one batch fails with (the transport is closed after it)."""
    try:
        with pytest.raises(error) as caught:
            http.send(batch(1))
    finally:
        http.close()
    return caught.value


def bearer(request: Any) -> str:
    return request.headers["authorization"].removeprefix("Bearer ")


def test_one_token_request_serves_many_concurrent_batches(receiver: Receiver, token_server: Receiver) -> None:
    # A slow token endpoint: the batches arrive while the first fetch is still under way, and wait for it.
    token_server.default = Reply(body=token_reply("tok-A").body, delay=0.5)
    http = transport(receiver.url, oauth2(token_server))
    try:
        threads = [threading.Thread(target=lambda i=i: [http.send(batch(i * 10 + k)) for k in range(5)])
                   for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        requests = receiver.wait_for(40)
    finally:
        http.close()
    assert len(token_server.requests) == 1
    assert {bearer(r) for r in requests} == {"tok-A"}
    token_request = token_server.requests[0]
    assert token_request.method == "POST"
    assert token_request.path == "/token"
    form = parse_qs(token_request.body.decode())
    assert form == {"grant_type": ["client_credentials"], "scope": ["events:write"]}
    assert token_request.headers["authorization"] == "Basic " + base64.b64encode(f"engine:{SECRET}".encode()).decode()


def test_client_secret_post_sends_the_credentials_in_the_form(receiver: Receiver, token_server: Receiver) -> None:
    http = transport(receiver.url, oauth2(token_server, client_auth="body", scope=None))
    try:
        http.send(batch(1))
    finally:
        http.close()
    form = parse_qs(token_server.requests[0].body.decode())
    assert form == {"grant_type": ["client_credentials"], "client_id": ["engine"], "client_secret": [SECRET]}
    assert "authorization" not in token_server.requests[0].headers


def test_a_401_fetches_one_new_token_and_resends_once(receiver: Receiver, token_server: Receiver) -> None:
    token_server.answer(token_reply("tok-A"), token_reply("tok-B"))
    receiver.answer(Reply(status=401, body=b"token revoked"))
    http = transport(receiver.url, oauth2(token_server))
    try:
        receipt = http.send(batch(1))
        http.send(batch(2))
    finally:
        http.close()
    assert receipt.status_code == 200
    assert [bearer(r) for r in receiver.requests] == ["tok-A", "tok-B", "tok-B"]
    assert len(token_server.requests) == 2


def test_a_second_401_is_a_rejection_not_a_loop_of_token_requests(receiver: Receiver, token_server: Receiver) -> None:
    receiver.default = Reply(status=401, body=b"no")
    rejected = failure(transport(receiver.url, oauth2(token_server)), TargetRejected)
    assert rejected.status_code == 401
    assert rejected.retryable
    assert len(receiver.requests) == 2
    assert len(token_server.requests) == 2


def test_the_token_is_renewed_shortly_before_it_expires(token_server: Receiver) -> None:
    now = [1000.0]
    token_server.answer(token_reply("tok-A", expires_in=100), token_reply("tok-B", expires_in="100"))
    auth = OAuth2ClientCredentials.model_validate(oauth2(token_server))
    with closing(new_pool(PRIVATE)) as pool:
        tokens = TokenSource(auth, pool, 5, clock=lambda: now[0])
        assert tokens.get() == "tok-A"
        now[0] += 89.9  # margin: min(30 s, 10% of the lifetime) = 10 s before the end
        assert tokens.get() == "tok-A"
        now[0] += 0.2
        assert tokens.get() == "tok-B"
        assert tokens.get(stale="tok-A") == "tok-B"  # a 401 for an old token does not refetch
    assert len(token_server.requests) == 2


def test_a_token_without_expires_in_is_reused_for_at_most_an_hour(token_server: Receiver) -> None:
    now = [0.0]
    token_server.default = Reply(body=b'{"access_token": "tok-C", "token_type": "bearer"}')
    auth = OAuth2ClientCredentials.model_validate(oauth2(token_server))
    with closing(new_pool(PRIVATE)) as pool:
        tokens = TokenSource(auth, pool, 5, clock=lambda: now[0])
        tokens.get()
        now[0] = 3599
        tokens.get()
        now[0] = 3601
        tokens.get()
    assert len(token_server.requests) == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=401, body=b'{"error": "invalid_client", "error_description": "bad secret"}'),
        Reply(body=b"<html>not json</html>"),
        Reply(body=b'{"access_token": "has space", "token_type": "bearer"}'),
        Reply(body=orjson.dumps({"access_token": "x" * 10_000})),
        Reply(body=b'{"access_token": "t", "token_type": "mac"}'),
    ],
)
def test_a_token_endpoint_that_fails_is_a_retryable_rejection_without_secrets(
    receiver: Receiver, token_server: Receiver, reply: Reply
) -> None:
    token_server.default = reply
    rejected = failure(transport(receiver.url, oauth2(token_server)), TargetRejected)
    assert rejected.retryable
    assert SECRET not in str(rejected)
    assert "OAuth2 token endpoint" in str(rejected)
    assert receiver.requests == []  # nothing is sent without a token


def test_a_private_token_url_is_refused_by_the_ssrf_guard(token_server: Receiver) -> None:
    http = transport("https://receiver.example.com/hook", oauth2(token_server), Settings(HOOK_HTTP_TIMEOUT_SEC=2))
    forbidden = failure(http, TargetForbidden)
    assert "127.0.0.1" in str(forbidden)
    assert not forbidden.retryable
    assert token_server.requests == []


@pytest.mark.parametrize(
    "change",
    [
        {"token_url": "ftp://example.com/token"},
        {"client_id": ""},
        {"client_secret": "line\nbreak"},
        {"client_secret": "x" * 2001},
        {"scope": "a  b"},
        {"scope": 'quote"'},
        {"client_auth": "jwt"},
        {"unknown": 1},
    ],
)
def test_a_bad_oauth2_config_is_refused(token_server: Receiver, change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OAuth2ClientCredentials.model_validate({**oauth2(token_server), **change})


def test_a_slow_token_endpoint_of_one_hook_never_holds_up_another_hook(receiver: Receiver) -> None:
    slow, fast = Receiver(), Receiver()
    slow.default = Reply(body=token_reply("tok-slow").body, delay=3)
    fast.default = token_reply("tok-fast")
    waiting, quick = transport(receiver.url, oauth2(slow)), transport(receiver.url, oauth2(fast))
    try:
        blocked = threading.Thread(target=waiting.send, args=(batch(1),))
        blocked.start()
        slow.wait_for(1)  # hook 1 is now inside its token request
        quick.send(batch(2))
        assert blocked.is_alive()  # hook 2 was delivered while hook 1 still waited for its token
        assert [bearer(r) for r in receiver.requests] == ["tok-fast"]
        blocked.join(10)
        assert [bearer(r) for r in receiver.requests] == ["tok-fast", "tok-slow"]
    finally:
        waiting.close()
        quick.close()
        slow.close()
        fast.close()
