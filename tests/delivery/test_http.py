from __future__ import annotations

import base64
import email.utils
import gzip
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from actionhooks import __version__
from actionhooks.delivery import make_transport
from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import HttpDelivery
from actionhooks.delivery.http import MAX_URL_BYTES, HttpTransport
from actionhooks.delivery.http1 import AnswerTimeout
from actionhooks.errors import PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings
from tests.delivery.conformance import HOOK_ID, Arrival, TransportConformance, sample_batch
from tests.support.raw_answers import RawAnswerServer
from tests.support.receiver import Receiver, Reply
from tests.support.trickle import TrickleServer

PRIVATE = Settings(HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_HTTP_TIMEOUT_SEC=2)


def http(url: str, settings: Settings = PRIVATE, **fields: Any) -> HttpTransport:
    config = HttpDelivery.model_validate({"type": "http", "url": url, **fields})
    return HttpTransport(config, settings)


def one_event_batch(event: dict[str, Any], batch_id: str = "batch-1", attempt: int = 1) -> Batch:
    return Batch(hook_id=HOOK_ID, batch_id=batch_id, attempt=attempt, events=[event])


class TestHttpConformance(TransportConformance):
    identity = "batch_id"

    @pytest.fixture
    def target(self, receiver: Receiver) -> Receiver:
        return receiver

    def make_transport(self, target: Receiver) -> Transport[Any]:
        return http(target.url)

    def make_unreachable_transport(self) -> Transport[Any]:
        with socket.socket() as sock:  # a port bound then released: nothing listens there
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return http(f"http://127.0.0.1:{port}/hook")

    def arrived(self, target: Receiver, count: int, timeout: float) -> list[Arrival]:
        def arrivals(requests: list[Any]) -> list[Arrival]:
            return [
                Arrival(event, r.headers["webhook-id"], r.headers.get("x-hook-id"))
                for r in requests
                for event in orjson.loads(r.body)
            ]

        requests = target.wait_until(lambda rs: len(arrivals(rs)) >= count, f"{count} event(s)", timeout)
        return arrivals(requests)

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, HttpTransport)
        return transport.closed


def test_the_registry_builds_the_http_transport_for_an_http_hook() -> None:
    config = HttpDelivery.model_validate({"type": "http", "url": "https://hooks.example.com/in"})
    with make_transport(config, PRIVATE) as transport:
        assert isinstance(transport, HttpTransport)


def test_a_post_is_a_json_array_with_standard_webhooks_headers_that_verify(receiver: Receiver) -> None:
    batch = sample_batch(3)
    with http(receiver.url, headers={"X-Tenant": "acme"}) as transport:
        receipt = transport.send(batch)
    request = receiver.wait_for(1)[0]
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-hook-id"] == str(HOOK_ID)
    assert request.headers["x-tenant"] == "acme"
    assert request.headers["user-agent"] == f"actionhooks/{__version__}"
    assert request.headers["webhook-id"] == batch.batch_id
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert Webhook(transport.config.signing_secret).verify(request.body, request.headers) == batch.events
    assert receipt == Receipt(
        latency_ms=receipt.latency_ms, status_code=200, response_excerpt="ok", payload=batch.events
    )


def test_every_attempt_of_a_batch_has_the_same_webhook_id_and_a_valid_signature(receiver: Receiver) -> None:
    first = sample_batch(2)
    retry = Batch(hook_id=first.hook_id, batch_id=first.batch_id, attempt=2, events=first.events)
    with http(receiver.url) as transport:
        transport.send(first)
        transport.send(retry)
        secret = transport.config.signing_secret
    requests = receiver.wait_for(2)
    assert [r.headers["webhook-id"] for r in requests] == [first.batch_id, first.batch_id]
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)


def test_a_batch_of_a_stored_array_sends_those_bytes_as_they_are_signed_over_them(receiver: Receiver) -> None:
    # A stored array in a form wire.dumps would not write (spaces, an escaped é): a decode and
    # re-encode on the way would change the bytes the receiver gets.
    stored = b'[{"n": 1, "name": "caf\\u00e9"}, {"n": 2}]'
    batch = Batch(HOOK_ID, "b-stored", 1, body=stored, n_events=2)
    with http(receiver.url) as transport:
        receipt = transport.send(batch)
        secret = transport.config.signing_secret
    request = receiver.wait_for(1)[0]
    assert request.body == stored
    assert Webhook(secret).verify(request.body, request.headers) == [{"n": 1, "name": "café"}, {"n": 2}]
    assert batch.known_events() is None  # sent without decoding it
    assert receipt.payload is None  # nothing decoded for a receipt the drain never reads


def test_a_get_batch_of_a_stored_array_sends_each_of_its_events(receiver: Receiver) -> None:
    batch = Batch(HOOK_ID, "b-get", 1, body=b'[{"n": 1}, {"n": 2}]', n_events=2)
    with http(receiver.url, method="GET") as transport:
        transport.send(batch)
    requests = receiver.wait_for(2)
    assert [(r.query, r.headers["webhook-id"]) for r in requests] == [({"n": ["1"]}, "b-get.0"),
                                                                        ({"n": ["2"]}, "b-get.1")]


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (
            {"type": "basic", "username": "crm", "password": "s3cret:é"},
            "Basic " + base64.b64encode("crm:s3cret:é".encode()).decode(),
        ),
        ({"type": "bearer", "token": "tok-123"}, "Bearer tok-123"),
    ],
)
def test_the_hooks_auth_is_sent_as_the_authorization_header(
    receiver: Receiver, auth: dict[str, str], expected: str
) -> None:
    with http(receiver.url, auth=auth) as transport:
        transport.send(sample_batch(1))
    assert receiver.wait_for(1)[0].headers["authorization"] == expected


def test_without_auth_no_authorization_header_is_sent(receiver: Receiver) -> None:
    with http(receiver.url) as transport:
        transport.send(sample_batch(1))
    assert "authorization" not in receiver.wait_for(1)[0].headers


def test_a_2xx_whose_body_matches_success_regex_is_a_success(receiver: Receiver) -> None:
    receiver.answer(Reply(status=202, body=b'{"status": "accepted"}'))
    with http(receiver.url, success_regex=r'"status":\s*"accepted"') as transport:
        receipt = transport.send(sample_batch(1))
    assert (receipt.status_code, receipt.response_excerpt) == (202, '{"status": "accepted"}')


def test_a_2xx_whose_body_does_not_match_success_regex_is_a_retryable_rejection(receiver: Receiver) -> None:
    receiver.answer(Reply(status=200, body=b'{"status": "queue full"}'))
    with http(receiver.url, success_regex='"accepted"') as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.status_code == 200
    assert caught.value.retryable
    assert "queue full" in caught.value.message
    assert "success_regex" in caught.value.message


@pytest.mark.parametrize("status", [400, 401, 404, 409, 500, 502])
def test_a_non_2xx_answer_is_a_retryable_rejection_with_its_status(receiver: Receiver, status: int) -> None:
    receiver.answer(Reply(status=status, body=b"nope: reason given by receiver"))
    with http(receiver.url) as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.status_code == status
    assert caught.value.retryable
    assert caught.value.retry_after is None
    assert f"answered {status}" in caught.value.message
    assert "reason given by receiver" in caught.value.message
    assert len(receiver.requests) == 1, "one send is one request: the transport never retries itself"


def test_a_status_listed_as_permanent_is_not_retryable(receiver: Receiver) -> None:
    receiver.answer(Reply(status=410), Reply(status=500))
    settings = Settings(HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_PERMANENT_STATUS_CODES=[410, 422])
    with http(receiver.url, settings) as transport:
        with pytest.raises(TargetRejected) as gone:
            transport.send(sample_batch(1))
        with pytest.raises(TargetRejected) as failing:
            transport.send(sample_batch(1))
    assert not gone.value.retryable
    assert failing.value.retryable


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_reported_on_429_and_503(receiver: Receiver, status: int) -> None:
    receiver.answer(Reply(status=status, headers={"Retry-After": "120"}))
    with http(receiver.url) as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retry_after == 120
    assert caught.value.retryable


def test_retry_after_as_an_http_date_becomes_seconds_from_now(receiver: Receiver) -> None:
    in_five_minutes = email.utils.formatdate(time.time() + 300, usegmt=True)
    receiver.answer(Reply(status=503, headers={"Retry-After": in_five_minutes}))
    with http(receiver.url) as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retry_after is not None
    assert 290 <= caught.value.retry_after <= 300


@pytest.mark.parametrize(("status", "value"), [(500, "120"), (429, "soon"), (429, "-5"), (503, "nan")])
def test_retry_after_is_ignored_off_429_and_503_and_when_unreadable(
    receiver: Receiver, status: int, value: str
) -> None:
    receiver.answer(Reply(status=status, headers={"Retry-After": value}))
    with http(receiver.url) as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retry_after is None


def test_retry_after_as_a_past_http_date_means_now(receiver: Receiver) -> None:
    receiver.answer(Reply(status=429, headers={"Retry-After": email.utils.formatdate(0, usegmt=True)}))
    with http(receiver.url) as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retry_after == 0


def test_a_receiver_slower_than_the_timeout_is_unreachable(receiver: Receiver) -> None:
    receiver.answer(Reply(delay=5))
    settings = Settings(HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_HTTP_TIMEOUT_SEC=0.3)
    started = time.monotonic()
    with http(receiver.url, settings) as transport, pytest.raises(TargetUnreachable) as caught:
        transport.send(sample_batch(1))
    assert time.monotonic() - started < 3
    assert caught.value.retryable
    assert "no answer within 0.3s" in caught.value.message
    assert isinstance(caught.value.__cause__, AnswerTimeout)


@pytest.mark.parametrize("mode", ["headers", "body"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_receiver_that_trickles_its_answer_is_cut_at_the_attempts_deadline(mode: str, method: str) -> None:
    # Given a receiver that sends its headers (or its body) one byte every 0.2 s, for half a minute:
    # every read gets a byte long before any per-read timeout
    server = TrickleServer(mode=mode, every=0.2)
    settings = Settings(HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_HTTP_TIMEOUT_SEC=1)
    try:
        started = time.monotonic()
        with http(server.url, settings, method=method) as transport, pytest.raises(TargetUnreachable) as caught:
            transport.send(sample_batch(1))
        took = time.monotonic() - started
    finally:
        server.close()
    # Then the attempt ends at its 1 s deadline, far before the answer would (the slack is for a busy machine)
    assert 1 <= took < 5, took
    assert "no answer within 1s" in caught.value.message
    assert caught.value.retryable
    assert server.requests == 1


def test_a_redirect_is_a_rejection_and_is_not_followed(receiver: Receiver) -> None:
    receiver.answer(Reply(status=302, headers={"Location": f"http://127.0.0.1:{receiver.port}/elsewhere"}))
    with http(receiver.url) as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.status_code == 302
    assert "not followed" in caught.value.message
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_the_response_excerpt_is_bounded(receiver: Receiver) -> None:
    receiver.answer(Reply(body=b"x" * 200_000))
    with http(receiver.url) as transport:
        receipt = transport.send(sample_batch(1))
    assert receipt.response_excerpt.startswith("xxx")
    assert len(receipt.response_excerpt) <= 2049


def test_a_body_that_claims_gzip_but_is_not_is_a_rejection(receiver: Receiver) -> None:
    receiver.answer(Reply(body=b"not gzip at all", headers={"Content-Encoding": "gzip"}))
    with http(receiver.url) as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.status_code == 200


def test_a_gzip_answer_is_decoded_before_matching_success_regex(receiver: Receiver) -> None:
    receiver.answer(Reply(body=gzip.compress(b"accepted"), headers={"Content-Encoding": "gzip"}))
    with http(receiver.url, success_regex="^accepted$") as transport:
        assert transport.send(sample_batch(1)).response_excerpt == "accepted"


def test_an_event_that_is_not_json_is_a_payload_error_and_nothing_is_sent(receiver: Receiver) -> None:
    with http(receiver.url) as transport, pytest.raises(PayloadError) as caught:
        transport.send(one_event_batch({"tags": {"a", "b"}}))
    assert not caught.value.retryable
    assert receiver.requests == []


# GET mode


def test_get_sends_the_event_fields_as_query_parameters_merged_with_the_urls_own(receiver: Receiver) -> None:
    event = {
        "event_type": "open",
        "text": "a b&c=d/ü",
        "account_id": 23,
        "score": 1.5,
        "is_test": True,
        "is_static": False,
        "profile_id": None,
        "event_data": {"campaign_id": 973, "name": "ü"},
        "tags": [1, "a"],
    }
    with http(receiver.url + "?token=abc", method="GET") as transport:
        receipt = transport.send(one_event_batch(event))
    request = receiver.wait_for(1)[0]
    assert request.method == "GET"
    assert request.body == b""
    assert request.query == {
        "token": ["abc"],
        "event_type": ["open"],
        "text": ["a b&c=d/ü"],
        "account_id": ["23"],
        "score": ["1.5"],
        "is_test": ["true"],
        "is_static": ["false"],
        "profile_id": [""],
        "event_data": ['{"campaign_id":973,"name":"ü"}'],
        "tags": ['[1,"a"]'],
    }
    assert len(receipt.payload) == 1
    sent = urlsplit(receipt.payload[0])
    assert sent.path == "/hook"
    assert "token=abc" in sent.query


def test_a_get_is_signed_over_the_event_as_sorted_compact_json(receiver: Receiver) -> None:
    event = {"z": 1, "a": {"y": True, "b": None}}
    with http(receiver.url, method="GET") as transport:
        transport.send(one_event_batch(event, batch_id="b-7"))
        secret = transport.config.signing_secret
    request = receiver.wait_for(1)[0]
    assert request.headers["webhook-id"] == "b-7"
    assert "content-type" not in request.headers
    Webhook(secret).verify(orjson.dumps(event, option=orjson.OPT_SORT_KEYS), request.headers)


def url_of_length(receiver: Receiver, length: int) -> tuple[str, dict[str, Any]]:
    """A GET hook URL and an event whose request URL is exactly `length` bytes long."""
    base = receiver.url + "?v="
    return receiver.url, {"v": "a" * (length - len(base))}


def test_a_get_url_of_exactly_8192_bytes_is_sent(receiver: Receiver) -> None:
    url, event = url_of_length(receiver, MAX_URL_BYTES)
    with http(url, method="GET") as transport:
        receipt = transport.send(one_event_batch(event))
    assert len(receipt.payload[0]) == MAX_URL_BYTES
    assert receiver.wait_for(1)[0].query["v"] == [event["v"]]


def test_a_get_url_over_8192_bytes_fails_without_truncation_or_retry(receiver: Receiver) -> None:
    url, event = url_of_length(receiver, MAX_URL_BYTES + 1)
    with http(url, method="GET") as transport, pytest.raises(PayloadError) as caught:
        transport.send(one_event_batch(event))
    assert not caught.value.retryable
    assert f"is {MAX_URL_BYTES + 1} bytes" in caught.value.message
    assert "8192-byte limit" in caught.value.message
    assert receiver.requests == []


def test_a_get_batch_sends_each_event_and_reports_which_arrived_before_a_failure(receiver: Receiver) -> None:
    receiver.answer(Reply(), Reply(status=500))
    batch = Batch(hook_id=HOOK_ID, batch_id="b-9", attempt=1, events=[{"n": 0}, {"n": 1}, {"n": 2}])
    with http(receiver.url, method="GET") as transport, pytest.raises(TargetRejected) as caught:
        transport.send(batch)
    assert caught.value.delivered == frozenset({0})
    assert [r.headers["webhook-id"] for r in receiver.requests] == ["b-9.0", "b-9.1"]
    assert [r.query["n"] for r in receiver.requests] == [["0"], ["1"]]


def test_a_connection_dropped_mid_answer_is_unreachable(raw_server: Callable[..., RawAnswerServer]) -> None:
    server = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it")
    with http(server.url) as transport, pytest.raises(TargetUnreachable) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retryable
    assert f"POST http://127.0.0.1:{server.port}/hook" in caught.value.message
    assert "closed the connection before the answer was complete" in caught.value.message


def test_errors_name_the_endpoint_without_its_query_or_credentials(receiver: Receiver) -> None:
    receiver.answer(Reply(status=500))
    url = f"http://user:pw@127.0.0.1:{receiver.port}/in?api_key=SECRET"
    with http(url, method="GET") as transport, pytest.raises(TargetRejected) as caught:
        transport.send(one_event_batch({"a": 1}))
    assert "SECRET" not in caught.value.message
    assert "pw" not in caught.value.message
    assert f"GET http://127.0.0.1:{receiver.port}/in" in caught.value.message
    assert receiver.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()


@pytest.mark.parametrize("settings", [PRIVATE, Settings()], ids=["private-allowed", "ssrf-guard"])
def test_a_name_that_does_not_resolve_is_unreachable_and_retried(settings: Settings) -> None:
    # RFC 6761: .invalid never resolves, so this is a DNS failure on any resolver
    with http("http://receiver.invalid/in", settings) as transport, pytest.raises(TargetUnreachable) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retryable
    assert caught.value.status_code is None
