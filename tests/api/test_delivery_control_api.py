"""/api/v1/hooks with payload filters and OAuth2 auth: 422 naming the condition, secrets write-only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.hooks.models import MATCH_LIMITS
from actionhooks.storage.hooks import SqlHookRepository
from actionhooks.storage.tables import Hook as HookRow

Body = Callable[..., dict[str, Any]]
PLAN = {"path": "event_data.params.plan", "op": "eq", "value": "pro"}
OAUTH2 = {"type": "oauth2_client_credentials", "token_url": "https://auth.example.com/oauth/token",
          "client_id": "engine", "client_secret": "top-secret", "scope": "events:write"}


def hooks_stored(app: FastAPI) -> int:
    with app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(HookRow))


@pytest.mark.parametrize(
    "case",
    [
        ({"path": "event_data.x", "op": "in", "value": list(range(MATCH_LIMITS["list_values"] + 1))}, []),
        ({"path": "a." * 40 + "b", "op": "eq", "value": 1}, ["path"]),
        ({"path": "event_data.x", "op": "eq", "value": "v" * 100_000}, []),
        ({"path": "event_data.x", "op": "gt", "value": [1]}, []),
        ({"path": "event_data.x", "op": "matches", "value": ".*"}, ["op"]),
        ({"path": ["event_data", "x"], "op": "eq", "value": 1}, ["path"]),
    ],
)
def test_a_hostile_condition_is_422_naming_its_index_and_nothing_is_stored(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body, case: tuple[dict[str, Any], list[Any]]
) -> None:
    bad, loc = case
    body = hook_body(filters={"campaigns": [973], "match": [PLAN, PLAN, bad]})
    response = client.post("/api/v1/hooks", json=body, headers=admin)
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["detail"]]
    assert any(found[:4 + len(loc)] == ["body", "filters", "match", 2, *loc] for found in locs), locs
    assert hooks_stored(app) == 0
    assert 'actionhooks_hook_rejected_requests_total{field="filters.match"} 1.0' in client.get("/metrics").text


def test_too_many_conditions_is_422_at_filters_match(
    client: TestClient, admin: dict[str, str], hook_body: Body
) -> None:
    body = hook_body(filters={"match": [PLAN] * (MATCH_LIMITS["conditions"] + 1)})
    response = client.post("/api/v1/hooks", json=body, headers=admin)
    assert response.status_code == 422
    assert ["body", "filters", "match"] in [error["loc"] for error in response.json()["detail"]]


def test_conditions_are_stored_and_shown_as_given(client: TestClient, admin: dict[str, str], hook_body: Body) -> None:
    conditions = [PLAN, {"path": "event_data.params.seats", "op": "gte", "value": 5},
                  {"path": "profile_id", "op": "exists", "value": True}]
    created = client.post("/api/v1/hooks", json=hook_body(filters={"match": conditions}), headers=admin).json()
    shown = client.get(f"/api/v1/hooks/{created['id']}", headers=admin).json()
    assert shown["filters"]["match"] == conditions


def test_the_oauth2_client_secret_is_write_only(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body
) -> None:
    delivery = {"type": "http", "url": "https://crm.example.com/hook", "auth": OAUTH2}
    created = client.post("/api/v1/hooks", json=hook_body(delivery=delivery), headers=admin)
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["delivery"]["auth"] == {**OAUTH2, "client_secret": "***", "client_auth": "basic"}
    assert "top-secret" not in created.text
    url = f"/api/v1/hooks/{hook['id']}"
    # Echoing the hook as read keeps the secret.
    assert client.put(url, json={k: hook[k] for k in hook_body()}, headers=admin).status_code == 200
    stored = SqlHookRepository(app.state.sessions).get(1, hook["id"]).spec.delivery
    assert stored.auth.client_secret == "top-secret"  # type: ignore[union-attr]


def test_a_new_token_url_without_a_new_client_secret_is_422_and_the_hook_is_unchanged(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body
) -> None:
    delivery = {"type": "http", "url": "https://crm.example.com/hook", "auth": OAUTH2}
    hook = client.post("/api/v1/hooks", json=hook_body(delivery=delivery), headers=admin).json()
    url = f"/api/v1/hooks/{hook['id']}"
    elsewhere = {"delivery": {"auth": {"token_url": "https://attacker.example.net/token"}}}
    refused = client.patch(url, json=elsewhere, headers=admin)
    assert refused.status_code == 422, refused.text
    assert ["body", "delivery", "auth", "client_secret"] in [e["loc"] for e in refused.json()["detail"]]
    assert 'actionhooks_hook_rejected_requests_total{field="delivery.auth"} 1.0' in client.get("/metrics").text
    stored = SqlHookRepository(app.state.sessions).get(1, hook["id"]).spec.delivery
    assert str(stored.auth.token_url) == OAUTH2["token_url"]  # type: ignore[union-attr]
    # Given again with the new token_url, it is accepted and stored.
    again = {"delivery": {"auth": {"token_url": "https://auth2.example.com/token", "client_secret": "new-one"}}}
    assert client.patch(url, json=again, headers=admin).status_code == 200
    stored = SqlHookRepository(app.state.sessions).get(1, hook["id"]).spec.delivery
    assert stored.auth.client_secret == "new-one"  # type: ignore[union-attr]
    # A change elsewhere (the scope) keeps the secret.
    assert client.patch(url, json={"delivery": {"auth": {"scope": "other"}}}, headers=admin).status_code == 200
    stored = SqlHookRepository(app.state.sessions).get(1, hook["id"]).spec.delivery
    assert stored.auth.client_secret == "new-one"  # type: ignore[union-attr]


def test_credentials_in_the_token_url_are_masked_kept_when_echoed_and_refused_for_another_host(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body
) -> None:
    # Given a token endpoint that takes a key in its query (as some identity providers' gateways do)
    auth = {**OAUTH2, "token_url": "https://auth.example.com/oauth/token?api_key=tk-9f2&tenant=7"}
    delivery = {"type": "http", "url": "https://crm.example.com/hook", "auth": auth}
    created = client.post("/api/v1/hooks", json=hook_body(delivery=delivery), headers=admin)
    assert created.status_code == 201, created.text
    hook = created.json()
    # Then no answer shows the key
    assert hook["delivery"]["auth"]["token_url"] == "https://auth.example.com/oauth/token?api_key=***&tenant=7"
    url = f"/api/v1/hooks/{hook['id']}"
    answers = [created.text, client.get(url, headers=admin).text, client.get("/api/v1/hooks", headers=admin).text]
    assert not any("tk-9f2" in answer for answer in answers)
    # And echoing the hook as shown keeps the stored key and client secret
    echoed = client.put(url, json={k: hook[k] for k in hook_body()}, headers=admin)
    assert echoed.status_code == 200, echoed.text
    stored = SqlHookRepository(app.state.sessions).get(1, hook["id"]).spec.delivery.auth
    assert str(stored.token_url) == auth["token_url"]  # type: ignore[union-attr]
    assert stored.client_secret == "top-secret"  # type: ignore[union-attr]
    # But the masked URL moved to another host restores nothing: 422 at the token_url, hook unchanged
    moved = {"delivery": {"auth": {"token_url": "https://attacker.example.net/oauth/token?api_key=***&tenant=7"}}}
    refused = client.patch(url, json=moved, headers=admin)
    assert refused.status_code == 422, refused.text
    assert ["body", "delivery", "auth", "token_url"] in [e["loc"] for e in refused.json()["detail"]]
    assert str(SqlHookRepository(app.state.sessions).get(1, hook["id"]).spec.delivery.auth.token_url) == (  # type: ignore[union-attr]
        auth["token_url"])
    # And a clone carries neither the key nor the auth
    clone = client.post(f"/api/v1/hooks/{hook['id']}/clone", headers=admin).json()
    assert "tk-9f2" not in str(clone)


def test_a_clone_gets_no_oauth2_auth(client: TestClient, admin: dict[str, str], hook_body: Body) -> None:
    delivery = {"type": "http", "url": "https://crm.example.com/hook", "auth": OAUTH2}
    hook = client.post("/api/v1/hooks", json=hook_body(delivery=delivery), headers=admin).json()
    clone = client.post(f"/api/v1/hooks/{hook['id']}/clone", headers=admin)
    assert clone.status_code == 201, clone.text
    assert clone.json()["delivery"]["auth"] == {"type": "none"}
