"""Secrets are write-only: no API response and no log line of any process ever shows them."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.engine import Engine, event, free_port, poll, redis_broker, running_engine
from tests.support.receiver import Receiver


def secrets_of(tag: str) -> dict[str, str]:
    """Unique secret values (so a hit in a log can only be a leak)."""
    mark = uuid.uuid4().hex[:12]
    return {
        "signing": "whsec_" + base64.b64encode(f"sign-{mark}-{tag}-0123456789".encode()).decode(),
        "basic": f"basic-pw-{mark}",
        "bearer": f"bearer-token-{mark}",
        "amqp": f"amqp-pw-{mark}",
        "sasl": f"sasl-pw-{mark}",
    }


def secret_hooks(secrets: dict[str, str], http_url: str, kafka_port: int) -> list[dict[str, Any]]:
    base = {"actions": ["click"]}
    return [
        {**base, "name": "bearer", "delivery": {"type": "http", "url": http_url, "signing_secret": secrets["signing"],
                                                "auth": {"type": "bearer", "token": secrets["bearer"]}}},
        {**base, "name": "basic", "delivery": {"type": "http", "url": http_url, "auth": {
            "type": "basic", "username": "u", "password": secrets["basic"]}}},
        {**base, "name": "amqp", "delivery": {"type": "rabbitmq_queue", "host": "127.0.0.1", "port": 5672,
                                              "username": "guest", "password": secrets["amqp"], "queue": "never"}},
        {**base, "name": "kafka", "delivery": {"type": "kafka", "bootstrap_servers": f"127.0.0.1:{kafka_port}",
                                               "topic": "never", "security_protocol": "SASL_PLAINTEXT",
                                               "sasl_mechanism": "PLAIN", "sasl_username": "u",
                                               "sasl_password": secrets["sasl"]}},
    ]


def leaked(text: str, secrets: dict[str, str]) -> list[str]:
    basic_header = base64.b64encode(f"u:{secrets['basic']}".encode()).decode()
    signing_key = secrets["signing"].removeprefix("whsec_")
    values = [*secrets.values(), basic_header, signing_key]
    return [value for value in values if value in text]


def test_no_response_of_any_hook_endpoint_shows_a_secret(client: TestClient, owner: dict[str, str]) -> None:
    secrets = secrets_of("api")
    seen: list[str] = []
    for hook in secret_hooks(secrets, "http://127.0.0.1:9/hook", 9):
        created = client.post("/api/v1/hooks", json=hook, headers=owner)
        assert created.status_code == 201, created.text
        hook_id = created.json()["id"]
        masked = created.json()["delivery"]
        seen += [
            created.text,
            client.get(f"/api/v1/hooks/{hook_id}", headers=owner).text,
            client.get("/api/v1/hooks", headers=owner).text,
            client.put(f"/api/v1/hooks/{hook_id}", json={**hook, "delivery": masked}, headers=owner).text,
            client.patch(f"/api/v1/hooks/{hook_id}", json={"name": "renamed"}, headers=owner).text,
            client.post(f"/api/v1/hooks/{hook_id}/clone", headers=owner).text,
            client.post(f"/api/v1/hooks/{hook_id}/stop", headers=owner).text,
            client.post(f"/api/v1/hooks/{hook_id}/test", headers=owner).text,
            client.get(f"/api/v1/hooks/{hook_id}/attempts", headers=owner).text,
            client.get(f"/api/v1/hooks/{hook_id}/failed", headers=owner).text,
        ]
    assert "***" in seen[0]
    assert leaked("\n".join(seen), secrets) == []


@pytest.mark.slow
def test_no_log_line_of_api_worker_or_scheduler_shows_a_secret_even_at_debug(
    tmp_path: Path, receiver: Receiver
) -> None:
    secrets = secrets_of("logs")
    with running_engine(
        tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker(), LOG_LEVEL="DEBUG",
        HOOK_RETRY_TIMES=2, HOOK_RETRY_PERIOD_SEC=[0.2], HOOK_HTTP_TIMEOUT_SEC=2,
    ) as engine:
        responses = _exercise(engine, secrets, receiver)
        logs = "\n".join(path.read_text(errors="replace") for path in engine.logs.values())
    # the secrets were really used: the receiver got the bearer token and the basic password
    authorizations = {r.headers.get("authorization") for r in receiver.requests}
    assert f"Bearer {secrets['bearer']}" in authorizations
    assert " ready." in logs  # the worker's log is there to be searched
    assert leaked(logs, secrets) == []
    assert leaked(responses, secrets) == []


def _exercise(engine: Engine, secrets: dict[str, str], receiver: Receiver) -> str:
    """Create the hooks, deliver one event to each (HTTP succeeds, brokers fail to the failed list), read it all."""
    texts: list[str] = []
    with engine.client() as api:
        ids = []
        for hook in secret_hooks(secrets, receiver.url, free_port()):
            created = api.post("/hooks", json=hook)
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        assert api.post("/events", json=[event(1)]).status_code == 202
        receiver.wait_for(2, timeout=20)

        def broker_hooks_failed() -> bool:
            return all(api.get(f"/hooks/{i}/failed").json() for i in ids[2:])

        poll(broker_hooks_failed, "the broker hooks to fail their batch", timeout=40)
        for hook_id in ids:
            texts += [api.get(f"/hooks/{hook_id}").text, api.get(f"/hooks/{hook_id}/attempts").text,
                      api.get(f"/hooks/{hook_id}/failed").text, api.post(f"/hooks/{hook_id}/test").text]
        texts.append(httpx.get(f"{engine.base_url}/metrics").text)
    return "\n".join(texts)
