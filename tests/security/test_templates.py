"""Template sandbox through the API: escapes are refused at save naming the key, size is bounded at render."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.api.app import create_app
from actionhooks.settings import Settings
from actionhooks.storage.tables import Hook
from tests.support.engine import event

MAX_OUTPUT = 1000


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
        TEMPLATE_MAX_OUTPUT_CHARS=MAX_OUTPUT,
    )
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


def hook_with(values: dict[str, str]) -> dict[str, Any]:
    return {"name": "templated", "actions": ["click"], "custom_data": {"values": values},
            "delivery": {"type": "http", "url": "http://127.0.0.1:9/"}}


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ uuid.__class__.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ uuid|attr('__class__') }}",
    "{{ uuid['__class__'] }}",
    "{{ config.items() }}",
    "{{ request.application }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{% for a in campaign_name %}{% for b in campaign_name %}{{ campaign_name }}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 9**9**9 }}",
    "{{ '%s' % uuid }}",
    "{% set x = uuid %}{{ x }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_a_sandbox_escape_is_refused_at_save_naming_the_values_key_and_nothing_is_stored(
    app: FastAPI, client: TestClient, owner: dict[str, str], source: str
) -> None:
    response = client.post("/api/v1/hooks", json=hook_with({"fine": "{{uuid}}", "evil": source}), headers=owner)
    assert response.status_code == 422, response.text
    assert [item["loc"] for item in response.json()["detail"]] == [["body", "custom_data", "values", "evil"]]
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Hook)) == 0


@pytest.mark.parametrize("source", ESCAPES[:4])
def test_a_sandbox_escape_is_refused_by_put_and_patch_too(
    client: TestClient, owner: dict[str, str], source: str
) -> None:
    hook_id = client.post("/api/v1/hooks", json=hook_with({"fine": "{{uuid}}"}), headers=owner).json()["id"]
    put = client.put(f"/api/v1/hooks/{hook_id}", json=hook_with({"evil": source}), headers=owner)
    patch = client.patch(f"/api/v1/hooks/{hook_id}", json={"custom_data": {"values": {"evil": source}}}, headers=owner)
    for response in (put, patch):
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][-1] == "evil"
    assert client.get(f"/api/v1/hooks/{hook_id}", headers=owner).json()["custom_data"]["values"] == {"fine": "{{uuid}}"}


def test_output_that_grows_past_the_bound_at_render_fails_cleanly_and_is_not_sent(
    client: TestClient, owner: dict[str, str], connects: list[Any]
) -> None:
    # Given a template that is small at save but doubles a catalog name that is long enough
    client.put("/api/v1/catalog/campaigns/973", json={"name": "N" * (MAX_OUTPUT // 2 + 1)}, headers=owner)
    hook_id = client.post("/api/v1/hooks", json=hook_with({"big": "{{ campaign_name ~ campaign_name }}"}),
                          headers=owner).json()["id"]
    # When a test event renders it
    result = client.post(f"/api/v1/hooks/{hook_id}/test", json={"event": event(1)}, headers=owner).json()
    # Then the render stops at the bound, names the key, and nothing is sent
    assert result["ok"] is False
    assert result["error"].startswith(f"rendering failed: big: output longer than {MAX_OUTPUT} characters")
    assert connects == []
