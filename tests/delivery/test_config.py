"""Delivery settings are checked when a hook is saved: each bad field is refused with its name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from actionhooks.delivery.config import DeliveryConfig

ADAPTER: TypeAdapter[Any] = TypeAdapter(DeliveryConfig)


def _errors(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        ADAPTER.validate_python(data)
    return [(tuple(e["loc"]), e["msg"]) for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_not*base64!", "followed by base64"),
        ("whsec_", "empty"),
    ],
)
def test_a_signing_secret_that_could_never_sign_is_refused_at_save(secret: str, message: str) -> None:
    errors = _errors({"type": "http", "url": "https://example.org/", "signing_secret": secret})
    assert errors[0][0] == ("http", "signing_secret")
    assert message in errors[0][1]


@pytest.mark.parametrize("header", ["Host", "content-length", "Transfer-Encoding", "webhook-signature", "X-Hook-Id"])
def test_headers_the_engine_or_the_connection_owns_are_refused(header: str) -> None:
    errors = _errors({"type": "http", "url": "https://example.org/", "headers": {header: "x"}})
    assert errors[0][0] == ("http", "headers")
    assert header in errors[0][1]


def test_an_invalid_success_regex_and_an_unknown_type_are_named() -> None:
    assert _errors({"type": "http", "url": "https://example.org/", "success_regex": "("})[0][0] == (
        "http",
        "success_regex",
    )
    assert _errors({"type": "smtp"})[0][0] == ()


def test_defaults_follow_the_contract() -> None:
    http = ADAPTER.validate_python({"type": "http", "url": "https://example.org/"})
    assert (http.method, http.max_batch_size, http.batch_timeout_sec, http.auth.type) == ("POST", 100, 5, "none")
    assert http.signing_secret.startswith("whsec_")
    queue = ADAPTER.validate_python({"type": "rabbitmq_queue", "host": "mq"})
    assert (queue.port, queue.vhost, queue.queue) == (5672, "/", "")
    exchange = ADAPTER.validate_python({"type": "rabbitmq_exchange", "host": "mq", "exchange": "events"})
    assert (exchange.exchange_type, exchange.durable, exchange.auto_delete) == ("direct", True, False)
    kafka = ADAPTER.validate_python({"type": "kafka", "bootstrap_servers": "k:9092", "topic": "t"})
    assert (kafka.key, kafka.security_protocol) == ("{{profile_id}}", "PLAINTEXT")


def test_a_basic_auth_username_with_a_colon_is_refused() -> None:
    errors = _errors(
        {"type": "http", "url": "https://example.org/", "auth": {"type": "basic", "username": "a:b", "password": "p"}}
    )
    assert errors[0][0] == ("http", "auth", "basic", "username")


def test_a_rate_limit_is_events_per_sec_or_for_http_also_requests_per_sec() -> None:
    http = {"type": "http", "url": "https://hooks.example.com/in"}
    assert ADAPTER.validate_python({**http, "rate_limit": {"events_per_sec": 50}}).rate_limit.cost(10) == 10
    assert ADAPTER.validate_python({**http, "rate_limit": {"requests_per_sec": 5}}).rate_limit.cost(10) == 1
    assert ADAPTER.validate_python(http).rate_limit is None
    kafka = {"type": "kafka", "bootstrap_servers": "127.0.0.1:9092", "topic": "t"}
    assert ADAPTER.validate_python({**kafka, "rate_limit": {"events_per_sec": 2}}).rate_limit.events_per_sec == 2
    # requests mean nothing to a broker: one message per event
    assert any("rate_limit" in loc for loc, _ in _errors({**kafka, "rate_limit": {"requests_per_sec": 2}}))


@pytest.mark.parametrize(
    "limit",
    [{"events_per_sec": 0}, {"events_per_sec": 0.5}, {"events_per_sec": -1}, {"events_per_sec": 10**7},
     {"events_per_sec": "fast"}, {}, {"events_per_sec": 5, "burst": 100}, {"events_per_sec": 5, "requests_per_sec": 1}],
)
def test_a_rate_limit_out_of_bounds_is_refused_at_the_field(limit: dict[str, Any]) -> None:
    errors = _errors({"type": "http", "url": "https://hooks.example.com/in", "rate_limit": limit})
    assert all(loc[:2] == ("http", "rate_limit") for loc, _ in errors), errors
