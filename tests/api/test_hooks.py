"""/api/v1/hooks: every call, status code, tenancy, secret masking and what a rejected request leaves behind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.delivery.signing import sign
from actionhooks.storage import hook_state
from actionhooks.storage.hooks import SqlHookRepository
from actionhooks.storage.tables import Hook as HookRow
from actionhooks.storage.tables import HookChange

Body = Callable[..., dict[str, Any]]
HOOK_KEYS = {
    "id", "account_id", "name", "active", "database_id", "actions", "filters", "custom_data",
    "include_content", "delivery", "created_at", "updated_at", "state", "paused_since",
}


def stored(app: FastAPI, account_id: int, hook_id: int) -> dict[str, Any]:
    """The stored delivery config, secrets included."""
    hook = SqlHookRepository(app.state.sessions).get(account_id, hook_id)
    return hook.spec.delivery.model_dump(mode="json")


def count(app: FastAPI, table: type) -> int:
    with app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(table))


def locs(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


@pytest.fixture
def created(client: TestClient, admin: dict[str, str], hook_body: Body) -> dict[str, Any]:
    response = client.post("/api/v1/hooks", json=hook_body(), headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_returns_201_with_the_contract_shape_and_every_secret_masked(
    app: FastAPI, created: dict[str, Any]
) -> None:
    assert set(created) == HOOK_KEYS
    assert created["account_id"] == 1
    assert created["filters"] == {
        "resources": [3], "campaigns": [973], "messages": [], "segments": [], "pixels": [], "match": []
    }
    assert created["delivery"]["auth"] == {"type": "bearer", "token": "***"}
    assert created["delivery"]["signing_secret"] == "***"
    assert created["created_at"].endswith("Z")
    secrets = stored(app, 1, created["id"])
    assert secrets["auth"]["token"] == "crm-api-token"
    assert secrets["signing_secret"].startswith("whsec_")


def test_list_and_get_show_only_the_callers_hooks(
    client: TestClient, admin: dict[str, str], other_admin: dict[str, str], created: dict[str, Any], hook_body: Body
) -> None:
    theirs = client.post("/api/v1/hooks", json=hook_body(name="theirs"), headers=other_admin).json()
    assert [h["id"] for h in client.get("/api/v1/hooks", headers=admin).json()] == [created["id"]]
    assert client.get(f"/api/v1/hooks/{created['id']}", headers=admin).json() == created
    for method in ("get", "put", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": hook_body()} if method in ("put", "patch") else {}
        response = client.request(method, f"/api/v1/hooks/{theirs['id']}", headers=admin, **kwargs)
        assert response.status_code == 404, method
        assert locs(response) == [["path", "id"]]
    for action in ("activate", "stop", "clone"):
        assert client.post(f"/api/v1/hooks/{theirs['id']}/{action}", headers=admin).status_code == 404
    assert client.get(f"/api/v1/hooks/{theirs['id']}", headers=other_admin).json()["name"] == "theirs"


def test_an_id_that_is_not_a_positive_integer_is_422_naming_it(client: TestClient, admin: dict[str, str]) -> None:
    for bad in ("abc", "0", str(2**63)):
        response = client.get(f"/api/v1/hooks/{bad}", headers=admin)
        assert response.status_code == 422
        assert locs(response) == [["path", "id"]]


def test_put_with_masked_secrets_keeps_them_and_a_new_value_replaces_them(
    app: FastAPI, client: TestClient, admin: dict[str, str], created: dict[str, Any]
) -> None:
    # Given a client that echoes the hook it read, with a changed name
    echoed = {k: v for k, v in created.items() if k not in {"id", "account_id", "created_at", "updated_at"}}
    before = stored(app, 1, created["id"])
    response = client.put(f"/api/v1/hooks/{created['id']}", json={**echoed, "name": "renamed"}, headers=admin)
    # Then the secrets it could not see are kept
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "renamed"
    assert response.json()["delivery"]["auth"]["token"] == "***"
    assert stored(app, 1, created["id"]) == before
    # When it sends a new token, Then that one is stored
    echoed["delivery"]["auth"]["token"] = "new-token"
    client.put(f"/api/v1/hooks/{created['id']}", json=echoed, headers=admin)
    assert stored(app, 1, created["id"])["auth"]["token"] == "new-token"


def test_a_mask_with_no_stored_secret_behind_it_is_rejected(
    client: TestClient, admin: dict[str, str], created: dict[str, Any], hook_body: Body
) -> None:
    body = hook_body()
    body["delivery"]["signing_secret"] = "***"
    response = client.post("/api/v1/hooks", json=body, headers=admin)
    assert response.status_code == 422
    assert locs(response) == [["body", "delivery", "signing_secret"]]
    # Switching auth from bearer to basic leaves no stored password to keep
    patch = {"delivery": {"auth": {"type": "basic", "username": "u", "password": "***"}}}
    response = client.patch(f"/api/v1/hooks/{created['id']}", json=patch, headers=admin)
    assert response.status_code == 422
    assert locs(response) == [["body", "delivery", "auth", "password"]]


def test_patch_merges_objects_removes_nulls_and_keeps_everything_else(
    app: FastAPI, client: TestClient, admin: dict[str, str], created: dict[str, Any]
) -> None:
    patch = {
        "actions": ["send"],
        "delivery": {"url": "https://crm.example.com/v2", "auth": {"token": "***"}},
        "custom_data": {"values": {"cname": None, "ymd": "{{event_date_ymd}}"}},
        "database_id": 42,
    }
    response = client.patch(f"/api/v1/hooks/{created['id']}", json=patch, headers=admin)
    assert response.status_code == 200, response.text
    hook = response.json()
    assert hook["actions"] == ["send"]
    assert hook["database_id"] == 42
    assert hook["delivery"]["url"] == "https://crm.example.com/v2"
    assert hook["delivery"]["max_batch_size"] == 100
    assert hook["custom_data"]["values"] == {
        "id": "{{uuid}}", "eventTimeUnix": "{{event_date_unix}}", "ymd": "{{event_date_ymd}}"
    }
    assert hook["custom_data"]["profile_fields"] == ["email", "_fname"]
    assert hook["filters"] == created["filters"]
    assert stored(app, 1, created["id"])["auth"]["token"] == "crm-api-token"


def test_patch_that_changes_the_delivery_type_replaces_the_delivery_object(
    client: TestClient, admin: dict[str, str], created: dict[str, Any]
) -> None:
    patch = {"delivery": {"type": "kafka", "bootstrap_servers": "127.0.0.1:9092", "topic": "events"}}
    response = client.patch(f"/api/v1/hooks/{created['id']}", json=patch, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["delivery"]["key"] == "{{profile_id}}"
    assert response.json()["delivery"]["sasl_password"] is None


def test_patch_rejects_read_only_fields_and_a_body_that_is_not_an_object(
    client: TestClient, admin: dict[str, str], created: dict[str, Any]
) -> None:
    response = client.patch(f"/api/v1/hooks/{created['id']}", json={"id": 5, "account_id": 2}, headers=admin)
    assert response.status_code == 422
    assert sorted(locs(response)) == [["body", "account_id"], ["body", "id"]]
    response = client.patch(f"/api/v1/hooks/{created['id']}", json=["name"], headers=admin)
    assert response.status_code == 422
    assert locs(response) == [["body"]]


def test_activate_stop_and_clone(
    app: FastAPI, client: TestClient, admin: dict[str, str], created: dict[str, Any]
) -> None:
    hook_id = created["id"]
    stopped = client.post(f"/api/v1/hooks/{hook_id}/stop", headers=admin)
    assert stopped.status_code == 200
    assert stopped.json()["active"] is False
    assert client.post(f"/api/v1/hooks/{hook_id}/activate", headers=admin).json()["active"] is True
    clone = client.post(f"/api/v1/hooks/{hook_id}/clone", headers=admin)
    assert clone.status_code == 201
    copy = clone.json()
    assert copy["name"] == "CRM sync (copy)"
    assert copy["active"] is False
    assert copy["id"] != hook_id
    # The clone carries none of the secrets (cloning must not be a way to recover or redirect them)
    original, copied = stored(app, 1, hook_id), stored(app, 1, copy["id"])
    assert copied["auth"] == {"type": "none"}
    assert copied["signing_secret"] != original["signing_secret"]
    assert {k: v for k, v in copied.items() if k not in ("auth", "signing_secret")} == {
        k: v for k, v in original.items() if k not in ("auth", "signing_secret")
    }


def test_a_long_name_is_cut_so_that_the_clone_name_still_fits(
    client: TestClient, admin: dict[str, str], hook_body: Body
) -> None:
    hook = client.post("/api/v1/hooks", json=hook_body(name="n" * 200), headers=admin).json()
    copy = client.post(f"/api/v1/hooks/{hook['id']}/clone", headers=admin).json()
    assert copy["name"] == "n" * 193 + " (copy)"


def test_every_change_appends_a_hook_change_for_the_workers(
    app: FastAPI, client: TestClient, admin: dict[str, str], created: dict[str, Any]
) -> None:
    hook_id = created["id"]
    client.patch(f"/api/v1/hooks/{hook_id}", json={"name": "x"}, headers=admin)
    client.post(f"/api/v1/hooks/{hook_id}/stop", headers=admin)
    client.post(f"/api/v1/hooks/{hook_id}/activate", headers=admin)
    assert count(app, HookChange) == 4
    assert client.delete(f"/api/v1/hooks/{hook_id}", headers=admin).status_code == 204
    assert count(app, HookChange) == 5
    assert client.get(f"/api/v1/hooks/{hook_id}", headers=admin).status_code == 404
    assert client.delete(f"/api/v1/hooks/{hook_id}", headers=admin).status_code == 404


@pytest.mark.parametrize(
    "case",
    [
        ({"actions": ["open", "opened"]}, ["body", "actions", 1]),
        ({"actions": []}, ["body", "actions"]),
        ({"filters": {"resources": [1], "lists": [2]}}, ["body", "filters", "lists"]),
        ({"filters": {"campaigns": ["973"]}}, ["body", "filters", "campaigns", 0]),
        ({"database_id": "7"}, ["body", "database_id"]),
        ({"name": ""}, ["body", "name"]),
        ({"active": "yes"}, ["body", "active"]),
        ({"custom_data": {"values": {"when": "{{ event_date"}}}, ["body", "custom_data", "values", "when"]),
        ({"custom_data": {"values": {"x": "{{ secret }}"}}}, ["body", "custom_data", "values", "x"]),
        ({"custom_data": {"profile_fields": "email"}}, ["body", "custom_data", "profile_fields"]),
        ({"delivery": {"type": "smtp"}}, ["body", "delivery"]),
        ({"delivery": {"type": "http", "url": "not a url"}}, ["body", "delivery", "http", "url"]),
        ({"delivery": {"type": "http", "url": "https://x.example", "headers": {"Host": "y"}}},
         ["body", "delivery", "http", "headers"]),
        ({"delivery": {"type": "rabbitmq_queue"}}, ["body", "delivery", "rabbitmq_queue", "host"]),
        ({"delivery": {"type": "rabbitmq_exchange", "host": "mq", "exchange": "x", "exchange_type": "fanout"}},
         ["body", "delivery", "rabbitmq_exchange", "exchange_type"]),
        ({"delivery": {"type": "kafka", "bootstrap_servers": "k:9092", "topic": "t", "key": "{{ nope }}"}},
         ["body", "delivery", "key"]),
        ({"include_content": None}, ["body", "include_content"]),
        ({"unknown": 1}, ["body", "unknown"]),
    ],
)
def test_an_invalid_hook_is_422_naming_the_field_and_nothing_is_stored(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body, case: tuple[dict[str, Any], list[Any]]
) -> None:
    change, loc = case
    response = client.post("/api/v1/hooks", json=hook_body(**change), headers=admin)
    assert response.status_code == 422, response.text
    assert loc in locs(response)
    assert all(error["msg"] for error in response.json()["detail"])
    assert count(app, HookRow) == 0
    assert count(app, HookChange) == 0


def test_a_rejected_put_or_patch_leaves_the_hook_unchanged(
    client: TestClient, admin: dict[str, str], created: dict[str, Any], hook_body: Body
) -> None:
    url = f"/api/v1/hooks/{created['id']}"
    assert client.put(url, json=hook_body(actions=["nope"]), headers=admin).status_code == 422
    assert client.patch(url, json={"custom_data": {"values": {"k": "{% for %}"}}}, headers=admin).status_code == 422
    assert client.get(url, headers=admin).json() == created


def test_malformed_json_is_422_with_a_clear_message(client: TestClient, admin: dict[str, str]) -> None:
    headers = {**admin, "Content-Type": "application/json"}
    response = client.post("/api/v1/hooks", content=b'{"name": ', headers=headers)
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"][0]["msg"]


def test_a_hook_shows_its_delivery_state_and_a_restart_clears_a_pause(
    app: FastAPI, client: TestClient, admin: dict[str, str], created: dict[str, Any]
) -> None:
    url = f"/api/v1/hooks/{created['id']}"
    assert (created["state"], created["paused_since"]) == ("active", None)
    # Given the workers found its receiver dead (storage/hook_state.py, as worker/control.py writes it)
    with app.state.sessions() as session:
        hook_state.load(session, created["id"], lock=True).paused_since = 1_700_000_000.5
        session.commit()
    shown = client.get(url, headers=admin).json()
    assert (shown["state"], shown["paused_since"]) == ("paused", "2023-11-14T22:13:20.500000Z")
    assert client.get("/api/v1/hooks", headers=admin).json()[0]["state"] == "paused"
    # When its user stops it, it is stopped; started again, it starts afresh
    assert client.post(f"{url}/stop", headers=admin).json()["state"] == "stopped"
    assert client.post(f"{url}/activate", headers=admin).json()["state"] == "active"
    assert client.get(url, headers=admin).json()["paused_since"] is None


def test_an_unpadded_signing_secret_saves_and_signs_like_its_padded_form_and_garbage_is_named(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_body: Body
) -> None:
    body = hook_body()
    body["delivery"]["signing_secret"] = "whsec_MTIzNDU"  # base64 of "12345" without its "=": the signer pads it
    response = client.post("/api/v1/hooks", json=body, headers=admin)
    assert response.status_code == 201, response.text
    saved = stored(app, 1, response.json()["id"])["signing_secret"]
    assert saved == "whsec_MTIzNDU"
    assert sign(saved, "b", 1, b"[]") == sign("whsec_MTIzNDU=", "b", 1, b"[]")
    for garbage in ("whsec_not*base64!", "whsec_A", "MTIzNDU=", "whsec_"):
        body["delivery"]["signing_secret"] = garbage
        response = client.post("/api/v1/hooks", json=body, headers=admin)
        assert response.status_code == 422, garbage
        assert locs(response) == [["body", "delivery", "http", "signing_secret"]], garbage
