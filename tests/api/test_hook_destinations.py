"""Saving hooks for the destinations of issue 21 (redis_stream, nats, mqtt, sqs, s3) through the API:
defaults, write-only secrets, templates checked at save, and a 422 naming the field for bad settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.delivery.config import (
    MqttDelivery,
    NatsDelivery,
    RedisStreamDelivery,
    S3Delivery,
    SqsDelivery,
)
from actionhooks.storage.hooks import SqlHookRepository
from actionhooks.storage.tables import Hook as HookRow

Body = Callable[..., dict[str, Any]]
AWS = {"region": "eu-west-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "s3cr3t"}

VALID: dict[str, dict[str, Any]] = {
    "redis_stream": {"type": "redis_stream", "url": "redis://redis.example.com:6379/2", "password": "pw"},
    "nats": {"type": "nats", "servers": ["nats://n1.example.com:4222", "n2.example.com"], "token": "tok",
             "password": "pw", "username": "u"},
    "mqtt": {"type": "mqtt", "host": "mqtt.example.com", "username": "u", "password": "pw"},
    "sqs": {"type": "sqs", "queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/events.fifo", **AWS},
    "s3": {"type": "s3", "bucket": "archive-bucket", **AWS},
}
SECRETS = {"redis_stream": ["password"], "nats": ["password", "token"], "mqtt": ["password"],
           "sqs": ["secret_access_key"], "s3": ["secret_access_key"]}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_destination_saves_with_its_defaults_and_its_secrets_masked(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body, kind: str
) -> None:
    response = client.post("/api/v1/hooks", json=hook_body(delivery=VALID[kind]), headers=admin)
    assert response.status_code == 201, response.text
    delivery = response.json()["delivery"]
    for name in SECRETS[kind]:
        assert delivery[name] == "***"
    stored = SqlHookRepository(app.state.sessions).get(1, response.json()["id"]).spec.delivery
    assert [getattr(stored, name) for name in SECRETS[kind]] == [VALID[kind][name] for name in SECRETS[kind]]
    defaults = {
        "redis_stream": {"stream": "actionhooks.{{event_type}}", "maxlen": None},
        "nats": {"subject": "actionhooks.{{list_id}}.{{event_type}}", "jetstream": True, "tls": False},
        "mqtt": {"port": 1883, "qos": 1, "protocol": "5", "topic": "actionhooks/{{list_id}}/{{event_type}}"},
        "sqs": {"message_group_id": "{{profile_id}}", "endpoint_url": None},
        "s3": {"prefix": "actionhooks", "endpoint_url": None, "max_batch_size": 1000, "batch_timeout_sec": 60},
    }[kind]
    assert {k: delivery[k] for k in defaults} == defaults


@pytest.mark.parametrize("kind", sorted(VALID))
def test_a_masked_secret_sent_back_keeps_the_stored_one(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body, kind: str
) -> None:
    created = client.post("/api/v1/hooks", json=hook_body(delivery=VALID[kind]), headers=admin).json()
    echoed = {k: v for k, v in created.items() if k not in ("id", "account_id", "created_at", "updated_at")}
    echoed["name"] = "renamed"
    response = client.put(f"/api/v1/hooks/{created['id']}", json=echoed, headers=admin)
    assert response.status_code == 200, response.text
    stored = SqlHookRepository(app.state.sessions).get(1, created["id"]).spec.delivery
    assert [getattr(stored, name) for name in SECRETS[kind]] == [VALID[kind][name] for name in SECRETS[kind]]


def test_models_declare_their_target_secret_and_template_fields() -> None:
    # The explicit lists the "secrets follow their target" rule (issue 15) and the save-time
    # template check read.
    assert RedisStreamDelivery.TARGET_FIELDS == ("url",)
    assert NatsDelivery.TARGET_FIELDS == ("servers",)
    assert MqttDelivery.TARGET_FIELDS == ("host", "port")
    assert SqsDelivery.TARGET_FIELDS == ("queue_url", "region", "endpoint_url")
    assert S3Delivery.TARGET_FIELDS == ("bucket", "region", "endpoint_url")
    assert [m.TEMPLATE_FIELDS for m in (RedisStreamDelivery, NatsDelivery, MqttDelivery, SqsDelivery, S3Delivery)] == [
        ("stream",), ("subject",), ("topic",), ("message_group_id",), ("prefix",)]
    for model in (RedisStreamDelivery, NatsDelivery, MqttDelivery, SqsDelivery, S3Delivery):
        assert set(model.TARGET_FIELDS) <= set(model.model_fields)
        assert set(model.SECRET_FIELDS) <= set(model.model_fields)


def bad(kind: str, **changes: Any) -> dict[str, Any]:
    return {**VALID[kind], **changes}


@pytest.mark.parametrize(
    "case",
    [
        (bad("redis_stream", url="http://redis.example.com"), ["body", "delivery", "redis_stream", "url"]),
        (bad("redis_stream", url="redis://:pw@redis.example.com"), ["body", "delivery", "redis_stream", "url"]),
        (bad("redis_stream", url="redis://redis.example.com/db"), ["body", "delivery", "redis_stream", "url"]),
        (bad("redis_stream", url="redis://redis.example.com:99999"), ["body", "delivery", "redis_stream", "url"]),
        (bad("redis_stream", maxlen=0), ["body", "delivery", "redis_stream", "maxlen"]),
        (bad("redis_stream", stream="{{ nope }}"), ["body", "delivery", "stream"]),
        (bad("redis_stream", stream="{% for %}"), ["body", "delivery", "stream"]),
        (bad("nats", servers=[]), ["body", "delivery", "nats", "servers"]),
        (bad("nats", servers=["http://n1:4222"]), ["body", "delivery", "nats", "servers"]),
        (bad("nats", servers=["u:p@n1:4222"]), ["body", "delivery", "nats", "servers"]),
        (bad("nats", servers=["n1:0"]), ["body", "delivery", "nats", "servers"]),
        (bad("nats", jetstream=False), ["body", "delivery", "nats", "jetstream"]),
        (bad("nats", subject="{{ secret }}"), ["body", "delivery", "subject"]),
        (bad("mqtt", host="mqtt.example.com:1883"), ["body", "delivery", "mqtt", "host"]),
        (bad("mqtt", host="tcp://mqtt"), ["body", "delivery", "mqtt", "host"]),
        (bad("mqtt", qos=0), ["body", "delivery", "mqtt", "qos"]),
        (bad("mqtt", port=70000), ["body", "delivery", "mqtt", "port"]),
        (bad("mqtt", topic="{{ event_date"), ["body", "delivery", "topic"]),
        (bad("sqs", region="Europe"), ["body", "delivery", "sqs", "region"]),
        (bad("sqs", queue_url="sqs://q"), ["body", "delivery", "sqs", "queue_url"]),
        (bad("sqs", secret_access_key=""), ["body", "delivery", "sqs", "secret_access_key"]),
        (bad("sqs", message_group_id="{{ x.__class__ }}"), ["body", "delivery", "message_group_id"]),
        (bad("s3", bucket="Upper_Case"), ["body", "delivery", "s3", "bucket"]),
        (bad("s3", endpoint_url="ftp://minio"), ["body", "delivery", "s3", "endpoint_url"]),
        (bad("s3", prefix="{{ nope }}"), ["body", "delivery", "prefix"]),
        (bad("s3", max_batch_size=0), ["body", "delivery", "s3", "max_batch_size"]),
        (bad("s3", batch_timeout_sec=-1), ["body", "delivery", "s3", "batch_timeout_sec"]),
        ({k: v for k, v in VALID["s3"].items() if k != "access_key_id"}, ["body", "delivery", "s3", "access_key_id"]),
    ],
)
def test_bad_settings_are_422_naming_the_field_and_nothing_is_stored(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body, case: tuple[dict[str, Any], list[Any]]
) -> None:
    delivery, loc = case
    response = client.post("/api/v1/hooks", json=hook_body(delivery=delivery), headers=admin)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(HookRow)) == 0
