"""Issue 15, point 4: a stored secret is never sent to a target it was not given for, and never cloned.

The attack: PATCH only the URL (or a broker's host, vhost, bootstrap servers) of a hook with a stored
password towards a receiver of one's own; or clone it and point the clone there.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actionhooks.delivery.config import MASK
from actionhooks.storage.hooks import SqlHookRepository

SIGNING = "whsec_" + base64.b64encode(b"original-signing-key-0123456789").decode()


def stored(app: FastAPI, hook_id: int) -> Any:
    return SqlHookRepository(app.state.sessions).get(23, hook_id).spec.delivery


def create(client: TestClient, owner: dict[str, str], delivery: dict[str, Any]) -> int:
    body = {"name": "secret", "actions": ["click"], "delivery": delivery}
    response = client.post("/api/v1/hooks", json=body, headers=owner)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


HTTP_BASIC = {"type": "http", "url": "https://crm.example.com/in", "signing_secret": SIGNING,
              "auth": {"type": "basic", "username": "u", "password": "basic-pw"}}
HTTP_BEARER = {"type": "http", "url": "https://crm.example.com/in", "auth": {"type": "bearer", "token": "tok-1"}}
AMQP = {"type": "rabbitmq_queue", "host": "mq.example.com", "username": "u", "password": "amqp-pw", "queue": "q"}
KAFKA = {"type": "kafka", "bootstrap_servers": "k1.example.com:9092", "topic": "t",
         "security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "sasl-pw"}


@pytest.mark.parametrize(
    "move",
    [{"url": "https://attacker.example.net/in"}, {"url": "http://crm.example.com/in"},
     {"url": "https://crm.example.com:8443/in"}],
    ids=["host", "scheme", "port"],
)
def test_patching_the_url_asks_for_a_required_password_again_and_keeps_nothing(
    app: FastAPI, client: TestClient, owner: dict[str, str], move: dict[str, Any]
) -> None:
    hook_id = create(client, owner, HTTP_BASIC)
    response = client.patch(f"/api/v1/hooks/{hook_id}", json={"delivery": move}, headers=owner)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "delivery", "auth", "password"]
    assert "give it again" in response.json()["detail"][0]["msg"]
    assert str(stored(app, hook_id).url) == "https://crm.example.com/in"  # nothing half-applied


def test_patching_the_url_with_the_secret_given_again_works_and_the_signing_secret_is_renewed(
    app: FastAPI, client: TestClient, owner: dict[str, str]
) -> None:
    hook_id = create(client, owner, HTTP_BASIC)
    patch = {"delivery": {"url": "https://new.example.com/in", "auth": {"type": "basic", "username": "u",
                                                                         "password": "new-pw"}}}
    assert client.patch(f"/api/v1/hooks/{hook_id}", json=patch, headers=owner).status_code == 200
    delivery = stored(app, hook_id)
    assert delivery.auth.password == "new-pw"
    assert delivery.signing_secret != SIGNING  # a default-able secret is dropped: a new one is generated


def test_a_change_on_the_same_target_keeps_the_secrets(app: FastAPI, client: TestClient, owner: dict[str, str]) -> None:
    hook_id = create(client, owner, HTTP_BASIC)
    patch = {"delivery": {"url": "https://crm.example.com/v2/in", "max_batch_size": 10}}
    assert client.patch(f"/api/v1/hooks/{hook_id}", json=patch, headers=owner).status_code == 200
    delivery = stored(app, hook_id)
    assert (delivery.auth.password, delivery.signing_secret) == ("basic-pw", SIGNING)


def test_put_echoing_masks_towards_another_host_does_not_carry_the_secrets(
    app: FastAPI, client: TestClient, owner: dict[str, str]
) -> None:
    hook_id = create(client, owner, HTTP_BEARER)
    shown = client.get(f"/api/v1/hooks/{hook_id}", headers=owner).json()
    body = {k: shown[k] for k in ("name", "actions")} | {"delivery": {**shown["delivery"],
                                                                       "url": "https://attacker.example.net/"}}
    response = client.put(f"/api/v1/hooks/{hook_id}", json=body, headers=owner)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "delivery", "auth", "token"]
    assert stored(app, hook_id).auth.token == "tok-1"


@pytest.mark.parametrize(
    ("delivery", "move", "secret", "dropped_to"),
    [
        (AMQP, {"host": "attacker.example.net"}, "password", "guest"),
        (AMQP, {"port": 5673}, "password", "guest"),
        (AMQP, {"vhost": "/other"}, "password", "guest"),
        (AMQP, {"tls": True}, "password", "guest"),
        ({**AMQP, "type": "rabbitmq_exchange", "exchange": "x", "queue": None}, {"host": "evil.example.net"},
         "password", "guest"),
        (KAFKA, {"bootstrap_servers": "attacker.example.net:9092"}, "sasl_password", None),
        (KAFKA, {"bootstrap_servers": "k1.example.com:9092,attacker.example.net:9092"}, "sasl_password", None),
        (KAFKA, {"security_protocol": "SASL_PLAINTEXT"}, "sasl_password", None),
    ],
    ids=["amqp host", "amqp port", "amqp vhost", "amqp tls", "exchange host", "kafka servers",
         "kafka one more server", "kafka plaintext"],
)
def test_a_broker_secret_is_dropped_when_its_target_moves(
    app: FastAPI, client: TestClient, owner: dict[str, str], delivery: dict[str, Any], move: dict[str, Any], *,
    secret: str, dropped_to: Any,
) -> None:
    hook_id = create(client, owner, {k: v for k, v in delivery.items() if v is not None})
    response = client.patch(f"/api/v1/hooks/{hook_id}", json={"delivery": move}, headers=owner)
    assert response.status_code == 200, response.text
    assert getattr(stored(app, hook_id), secret) == dropped_to


def test_a_broker_secret_stays_when_only_other_fields_change(
    app: FastAPI, client: TestClient, owner: dict[str, str]
) -> None:
    amqp = create(client, owner, AMQP)
    kafka = create(client, owner, KAFKA)
    client.patch(f"/api/v1/hooks/{amqp}", json={"delivery": {"queue": "other"}}, headers=owner)
    client.patch(f"/api/v1/hooks/{kafka}", json={"delivery": {"topic": "other", "compression": "gzip"}},
                 headers=owner)
    assert stored(app, amqp).password == "amqp-pw"
    assert stored(app, kafka).sasl_password == "sasl-pw"


@pytest.mark.parametrize("delivery", [HTTP_BASIC, HTTP_BEARER, AMQP, KAFKA], ids=["basic", "bearer", "amqp", "kafka"])
def test_a_clone_carries_no_secret_at_all(
    app: FastAPI, client: TestClient, owner: dict[str, str], delivery: dict[str, Any]
) -> None:
    hook_id = create(client, owner, delivery)
    original = stored(app, hook_id).model_dump()
    clone = client.post(f"/api/v1/hooks/{hook_id}/clone", headers=owner)
    assert clone.status_code == 201
    copied = stored(app, clone.json()["id"]).model_dump()
    for value in ("basic-pw", "tok-1", "amqp-pw", "sasl-pw", SIGNING):
        assert value not in str(copied)
    if "signing_secret" in original:
        assert copied["signing_secret"] != original["signing_secret"]
    # and the clone cannot be redirected to recover them either: nothing is left to carry
    moved = client.patch(f"/api/v1/hooks/{clone.json()['id']}", json={"delivery": {"host": "evil.example.net"}}
                         if "host" in delivery else {"name": "x"}, headers=owner)
    assert moved.status_code in (200, 422)
    assert "amqp-pw" not in str(stored(app, clone.json()["id"]).model_dump())


def test_a_clone_drops_credentials_inside_the_url_and_headers(
    app: FastAPI, client: TestClient, owner: dict[str, str]
) -> None:
    delivery = {"type": "http", "url": "https://u:url-pw@crm.example.com/in?api_key=k-123&x=1",
                "headers": {"X-Api-Key": "h-456", "X-Team": "blue"}}
    hook_id = create(client, owner, delivery)
    clone_id = client.post(f"/api/v1/hooks/{hook_id}/clone", headers=owner).json()["id"]
    copied = stored(app, clone_id)
    assert str(copied.url) == "https://crm.example.com/in?x=1"
    assert copied.headers == {"X-Team": "blue"}
    assert MASK not in str(copied.model_dump())


REDIS = {"type": "redis_stream", "url": "redis://127.0.0.1:6379/0", "password": "redis-pw"}
NATS = {"type": "nats", "servers": ["nats://127.0.0.1:4222"], "token": "nats-tok"}
MQTT = {"type": "mqtt", "host": "mqtt.example.com", "username": "u", "password": "mqtt-pw"}
SQS = {"type": "sqs", "queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/q", "region": "eu-west-1",
       "access_key_id": "AKIDEXAMPLE", "secret_access_key": "aws-secret"}


@pytest.mark.parametrize(
    ("delivery", "move", "secret"),
    [
        (REDIS, {"url": "redis://attacker.example.net:6379/0"}, "password"),
        (NATS, {"servers": ["nats://attacker.example.net:4222"]}, "token"),
        (MQTT, {"host": "attacker.example.net"}, "password"),
        (MQTT, {"port": 8883}, "password"),
    ],
    ids=["redis url", "nats servers", "mqtt host", "mqtt port"],
)
def test_the_new_destination_types_follow_the_same_rule(
    app: FastAPI, client: TestClient, owner: dict[str, str], delivery: dict[str, Any], move: dict[str, Any], *,
    secret: str,
) -> None:
    hook_id = create(client, owner, delivery)
    assert client.patch(f"/api/v1/hooks/{hook_id}", json={"delivery": {"stream": "s"} if "url" in delivery
                                                           else {"username": "u2"}}, headers=owner).status_code == 200
    assert getattr(stored(app, hook_id), secret) == delivery[secret]  # same target: kept
    assert client.patch(f"/api/v1/hooks/{hook_id}", json={"delivery": move}, headers=owner).status_code == 200
    assert getattr(stored(app, hook_id), secret) is None  # moved: dropped


def test_a_type_that_cannot_exist_without_its_secret_is_not_cloned(
    app: FastAPI, client: TestClient, owner: dict[str, str]
) -> None:
    hook_id = create(client, owner, SQS)
    response = client.post(f"/api/v1/hooks/{hook_id}/clone", headers=owner)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["delivery", "secret_access_key"]
    assert len(client.get("/api/v1/hooks", headers=owner).json()) == 1
