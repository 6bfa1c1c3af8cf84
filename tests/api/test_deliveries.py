"""POST /hooks/{id}/test, the attempts log and the failed list, in-process against a real receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actionhooks.api.app import create_app
from actionhooks.settings import Settings
from actionhooks.storage.tokens import create_token
from tests.support.receiver import Receiver, Reply


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """Private targets allowed: the receiver is on loopback."""
    return create_app(
        Settings(
            DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}",
            DATA_DIR=str(tmp_path),
            HOOK_ALLOW_PRIVATE_TARGETS=True,
            HOOK_HTTP_TIMEOUT_SEC=1,
        )
    )


def _hook(client: TestClient, admin: dict[str, str], url: str, **delivery: Any) -> dict[str, Any]:
    body = {
        "name": "t",
        "actions": ["open"],
        "database_id": 111,
        "custom_data": {"values": {"who": "{{profile_id}}", "when": "{{event_date_ymd}}"}},
        "delivery": {"type": "http", "url": url, **delivery},
    }
    response = client.post("/api/v1/hooks", json=body, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_test_sending_posts_a_generated_sample_once_and_returns_exactly_what_was_sent(
    client: TestClient, admin: dict[str, str], receiver: Receiver
) -> None:
    hook = _hook(client, admin, receiver.url)
    result = client.post(f"/api/v1/hooks/{hook['id']}/test", headers=admin).json()
    assert result["ok"] is True
    assert result["status_code"] == 200
    assert result["error"] is None
    assert result["latency_ms"] >= 0
    assert result["response_excerpt"] == "ok"  # the start of the receiver's answer
    (request,) = receiver.wait_for(1)
    assert orjson.loads(request.body) == result["payload"]
    (sample,) = result["payload"]
    assert sample["is_test"] is True
    assert sample["event_type"] == "open"
    assert sample["list_id"] == 111
    assert sample["custom_data"] == {"who": sample["profile_id"], "when": sample["event_date"][:10]}


def test_test_sending_a_given_event_marks_it_as_a_test(
    client: TestClient, admin: dict[str, str], receiver: Receiver
) -> None:
    hook = _hook(client, admin, receiver.url)
    given = {
        "event_type": "click",
        "event_date": "2023-03-17T15:07:00Z",
        "account_id": 1,
        "is_test": False,
        "list_id": 5,
        "profile_id": "p-9",
        "event_data": {"campaign_id": 1},
    }
    result = client.post(f"/api/v1/hooks/{hook['id']}/test", json={"event": given}, headers=admin).json()
    sent = result["payload"][0]
    assert sent["is_test"] is True
    assert sent["profile_id"] == "p-9"
    assert sent["custom_data"] == {"who": "p-9", "when": "2023-03-17"}


def test_a_failing_test_send_reports_the_error_and_is_not_retried(
    client: TestClient, admin: dict[str, str], receiver: Receiver
) -> None:
    receiver.default = Reply(status=503, body=b"maintenance")
    hook = _hook(client, admin, receiver.url)
    result = client.post(f"/api/v1/hooks/{hook['id']}/test", headers=admin).json()
    assert result["ok"] is False
    assert result["status_code"] == 503
    assert "503" in result["error"]
    assert len(receiver.requests) == 1


def test_an_invalid_given_event_is_refused_naming_its_field(
    client: TestClient, admin: dict[str, str], receiver: Receiver
) -> None:
    hook = _hook(client, admin, receiver.url)
    bad = {"event_type": "nope", "event_date": "2023-03-17T15:07:00Z", "is_test": True, "event_data": {}}
    response = client.post(f"/api/v1/hooks/{hook['id']}/test", json={"event": bad}, headers=admin)
    assert response.status_code == 422
    assert ["body", "event", "event_type"] in [d["loc"] for d in response.json()["detail"]]
    assert receiver.requests == []


def test_get_mode_sends_one_event_as_query_parameters(
    client: TestClient, admin: dict[str, str], receiver: Receiver
) -> None:
    hook = _hook(client, admin, receiver.url, method="GET")
    result = client.post(f"/api/v1/hooks/{hook['id']}/test", headers=admin).json()
    assert result["ok"] is True
    (request,) = receiver.wait_for(1)
    assert request.method == "GET"
    assert request.query["event_type"] == ["open"]
    assert orjson.loads(request.query["custom_data"][0])["when"]


def test_a_get_url_over_8_kb_fails_clearly_without_truncating(
    client: TestClient, admin: dict[str, str], receiver: Receiver
) -> None:
    hook = _hook(client, admin, receiver.url, method="GET")
    given = {
        "event_type": "open",
        "event_date": "2023-03-17T15:07:00Z",
        "account_id": 1,
        "is_test": True,
        "event_data": {"link_url": "x" * 9000},
    }
    result = client.post(f"/api/v1/hooks/{hook['id']}/test", json={"event": given}, headers=admin).json()
    assert result["ok"] is False
    assert "8" in result["error"]
    assert "PayloadError" in result["error"]
    assert receiver.requests == []


def test_delivery_endpoints_of_another_account_answer_404(
    client: TestClient, app: FastAPI, admin: dict[str, str], receiver: Receiver
) -> None:
    hook = _hook(client, admin, receiver.url)
    other = {"Authorization": f"Bearer {create_token(app.state.sessions, 2, 'admin')}"}
    for method, path in (("post", "test"), ("get", "attempts"), ("get", "failed"), ("post", "failed/replay")):
        response = getattr(client, method)(f"/api/v1/hooks/{hook['id']}/{path}", headers=other)
        assert response.status_code == 404, (path, response.text)
    assert receiver.requests == []


def test_an_ingest_token_cannot_use_delivery_endpoints(
    client: TestClient, ingest: dict[str, str], admin: dict[str, str], receiver: Receiver
) -> None:
    hook = _hook(client, admin, receiver.url)
    assert client.post(f"/api/v1/hooks/{hook['id']}/test", headers=ingest).status_code == 403
    assert client.get(f"/api/v1/hooks/{hook['id']}/failed", headers=ingest).status_code == 403
