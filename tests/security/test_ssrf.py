"""The SSRF guard seen through the API: POST /hooks/{id}/test refuses private targets before any connect."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("delivery", "reason"),
    [
        ({"type": "http", "url": "http://127.0.0.1:9/hook"}, "loopback"),
        ({"type": "http", "url": "http://localhost:9/hook"}, "localhost is not a public address;"),
        ({"type": "http", "url": "http://[::1]:9/hook"}, "loopback"),
        ({"type": "http", "url": "http://[::ffff:127.0.0.1]:9/hook"}, "loopback"),
        ({"type": "http", "url": "http://2130706433:9/hook"}, "loopback"),  # 127.0.0.1 as one decimal number
        ({"type": "http", "url": "http://10.0.0.1/hook"}, "private"),
        ({"type": "http", "url": "http://[2002:7f00:1::]:9/hook"}, "IPv4-embedded loopback"),  # 6to4
        ({"type": "http", "url": "http://[2002:a9fe:a9fe::]/latest/meta-data/"}, "IPv4-embedded link-local"),
        ({"type": "http", "url": "http://[64:ff9b::7f00:1]:9/hook"}, "IPv4-embedded loopback"),  # NAT64
        ({"type": "http", "url": "http://[64:ff9b::a00:1]:9/hook"}, "IPv4-embedded private"),
        ({"type": "http", "url": "http://[fec0::1]:9/hook"}, "site-local"),
        ({"type": "http", "url": "http://169.254.169.254/latest/meta-data/"}, "link-local"),
        ({"type": "http", "url": "http://100.64.0.1/hook"}, "carrier-grade NAT"),
        ({"type": "http", "url": "http://0.0.0.0:9/hook"}, "unspecified"),
        ({"type": "http", "url": "http://10.0.0.1/hook", "method": "GET"}, "private"),
        ({"type": "rabbitmq_queue", "host": "127.0.0.1", "queue": "q"}, "loopback"),
        ({"type": "rabbitmq_exchange", "host": "192.168.1.1", "exchange": "x"}, "private"),
        ({"type": "kafka", "bootstrap_servers": "127.0.0.1:9", "topic": "t"}, "loopback"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.get("url") or v.get("host") or v.get("bootstrap_servers"),
)
def test_a_test_send_to_a_private_target_is_refused_before_connecting_and_says_so(
    client: TestClient, owner: dict[str, str], connects: list[Any], delivery: dict[str, Any], reason: str
) -> None:
    hook = {"name": "ssrf", "actions": ["click"], "delivery": delivery}
    created = client.post("/api/v1/hooks", json=hook, headers=owner)
    assert created.status_code == 201, created.text
    result = client.post(f"/api/v1/hooks/{created.json()['id']}/test", headers=owner)
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["ok"] is False
    assert body["error"].startswith("TargetForbidden"), body["error"]
    assert reason in body["error"]
    assert "HOOK_ALLOW_PRIVATE_TARGETS" in body["error"]  # the user learns how to allow it on purpose
    assert connects == []


def test_a_refusal_never_tells_what_an_internal_name_resolves_to(
    client: TestClient, owner: dict[str, str], connects: list[Any]
) -> None:
    hook = {"name": "probe", "actions": ["click"], "delivery": {"type": "http", "url": "http://localhost:9/x"}}
    created = client.post("/api/v1/hooks", json=hook, headers=owner)
    error = client.post(f"/api/v1/hooks/{created.json()['id']}/test", headers=owner).json()["error"]
    assert "not a public address" in error
    assert "127.0.0.1" not in error
    assert "::1" not in error
    assert "loopback" not in error  # the kind of address is a resolution detail too
    assert connects == []
