"""Issue 15, point 5: credentials inside URLs and headers are secrets: masked in every answer, never logged."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from actionhooks.api.app import create_app
from actionhooks.delivery.config import MASK, redact
from actionhooks.settings import Settings
from actionhooks.storage.hooks import SqlHookRepository
from tests.support.receiver import Receiver


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    application = create_app(Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
        HOOK_ALLOW_PRIVATE_TARGETS=True, LOG_LEVEL="DEBUG",
    ))
    yield application
    application.state.engine.dispose()


@pytest.fixture
def secrets() -> dict[str, str]:
    mark = uuid.uuid4().hex[:10]
    return {"userinfo": f"url-pw-{mark}", "query": f"qk-{mark}", "sig": f"sg-{mark}", "header": f"hdr-{mark}",
            "apikey": f"ak-{mark}"}


def hook(receiver: Receiver, secrets: dict[str, str], method: str = "POST") -> dict[str, Any]:
    url = (f"http://user:{secrets['userinfo']}@127.0.0.1:{receiver.port}/hook"
           f"?api_key={secrets['query']}&sig={secrets['sig']}&list=7")
    headers = {"Authorization": f"Basic {secrets['header']}", "X-Api-Key": secrets["apikey"], "X-Team": "blue"}
    return {"name": "inline", "actions": ["click"],
            "delivery": {"type": "http", "url": url, "method": method, "headers": headers}}


def leaks(text_: str, secrets: dict[str, str]) -> list[str]:
    return [value for value in secrets.values() if value in text_]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_url_and_header_credentials_are_masked_in_every_answer_and_still_sent(
    app: FastAPI, client: TestClient, owner: dict[str, str], receiver: Receiver, secrets: dict[str, str], *,
    method: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    created = client.post("/api/v1/hooks", json=hook(receiver, secrets, method), headers=owner)
    assert created.status_code == 201, created.text
    hook_id = created.json()["id"]
    shown = created.json()["delivery"]
    assert shown["url"].startswith(f"http://user:{MASK}@127.0.0.1")
    assert f"api_key={MASK}" in shown["url"]
    assert f"sig={MASK}" in shown["url"]
    assert "list=7" in shown["url"]
    assert shown["headers"] == {"Authorization": MASK, "X-Api-Key": MASK, "X-Team": "blue"}
    answers = [
        created.text,
        client.get("/api/v1/hooks", headers=owner).text,
        client.get(f"/api/v1/hooks/{hook_id}", headers=owner).text,
        # echoing the hook as shown keeps the stored credentials (they are write-only, not wiped)
        client.put(f"/api/v1/hooks/{hook_id}", headers=owner,
                   json={"name": "inline", "actions": ["click"], "delivery": shown}).text,
        client.patch(f"/api/v1/hooks/{hook_id}", json={"name": "renamed"}, headers=owner).text,
        client.post(f"/api/v1/hooks/{hook_id}/test", headers=owner).text,
        client.get(f"/api/v1/hooks/{hook_id}/attempts", headers=owner).text,
    ]
    assert leaks("\n".join(answers), secrets) == []
    assert leaks(caplog.text, secrets) == []
    assert "HTTP Request:" not in caplog.text  # httpx's request log (full URL) is off
    # the receiver did get the real credentials: masking is for answers, not for delivery
    request = receiver.wait_for(1)[0]
    assert request.query["api_key"] == [secrets["query"]]
    # (httpx turns the URL's userinfo into the Authorization header, over a configured one)
    userinfo = base64.b64encode(f"user:{secrets['userinfo']}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {userinfo}"
    assert request.headers["x-api-key"] == secrets["apikey"]
    delivery = SqlHookRepository(app.state.sessions).get(23, hook_id).spec.delivery
    assert secrets["userinfo"] in str(delivery.url)


def test_a_masked_url_sent_for_another_host_is_refused_not_half_restored(
    client: TestClient, owner: dict[str, str], receiver: Receiver, secrets: dict[str, str]
) -> None:
    created = client.post("/api/v1/hooks", json=hook(receiver, secrets), headers=owner).json()
    moved = {**created["delivery"], "url": created["delivery"]["url"].replace("127.0.0.1", "localhost")}
    response = client.put(f"/api/v1/hooks/{created['id']}", headers=owner,
                          json={"name": "inline", "actions": ["click"], "delivery": moved})
    assert response.status_code == 422
    locs = [d["loc"] for d in response.json()["detail"]]
    assert ["body", "delivery", "url"] in locs


def test_a_failed_sql_statement_does_not_carry_its_parameters(app: FastAPI) -> None:
    with pytest.raises(DBAPIError) as info, app.state.engine.connect() as conn:
        conn.execute(text("INSERT INTO no_such_table VALUES (:content)"), {"content": "message-body-secret"})
    assert "message-body-secret" not in str(info.value)


def test_error_texts_are_redacted_before_they_are_stored_or_logged() -> None:
    said = "connect to amqp://guest:pw-1@mq:5672/ failed; GET https://h/x?token=t-2&a=1 and http://tok-3@h/"
    assert redact(said) == f"connect to amqp://{MASK}@mq:5672/ failed; GET https://h/x?token={MASK}&a=1 and http://{MASK}@h/"
