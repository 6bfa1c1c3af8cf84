"""Tenancy: a token of one account never reads, changes, sends, replays or even confirms another account's data."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from actionhooks.storage.tables import Attempt, Delivery
from tests.support.engine import event


@pytest.fixture
def owned(app: FastAPI, client: TestClient, owner: dict[str, str]) -> dict[str, Any]:
    """Account 23's hook (with a failed batch and an attempt), catalog entry and profile."""
    hook_body = {"name": "owner's hook", "actions": ["click"], "delivery": {"type": "http", "url": "http://x.example/"}}
    hook = client.post("/api/v1/hooks", json=hook_body, headers=owner).json()
    assert client.put("/api/v1/catalog/campaigns/973", json={"name": "owner's campaign"}, headers=owner).is_success
    profile = client.put("/api/v1/databases/111/profiles/p1", json={"fields": {"email": "o@x"}}, headers=owner)
    assert profile.is_success
    batch_id, now = uuid.uuid4().hex, time.time()
    with app.state.sessions() as session:
        session.add(Delivery(id=batch_id, hook_id=hook["id"], account_id=23, events=orjson.dumps([event(1)]),
                             n_events=1, status="failed", attempts=4, next_attempt_at=now, created_at=now,
                             failed_at=now, last_error="owner's secret error"))
        session.add(Attempt(hook_id=hook["id"], delivery_id=batch_id, attempt=4, started_at=now, outcome="error",
                            error="owner's secret error", n_events=1))
        session.commit()
    return {"hook": hook, "batch": batch_id}


def test_another_accounts_hook_answers_404_on_every_hook_endpoint_and_stays_unchanged(
    app: FastAPI, client: TestClient, owner: dict[str, str], intruder: dict[str, str], *, owned: dict[str, Any],
    connects: list[Any],
) -> None:
    hook_id = owned["hook"]["id"]
    replacement = {"name": "taken", "actions": ["open"], "delivery": {"type": "http", "url": "http://evil.example/"}}
    calls = [
        ("GET", f"/api/v1/hooks/{hook_id}", None),
        ("PUT", f"/api/v1/hooks/{hook_id}", replacement),
        ("PATCH", f"/api/v1/hooks/{hook_id}", {"name": "taken"}),
        ("POST", f"/api/v1/hooks/{hook_id}/stop", None),
        ("POST", f"/api/v1/hooks/{hook_id}/activate", None),
        ("POST", f"/api/v1/hooks/{hook_id}/clone", None),
        ("POST", f"/api/v1/hooks/{hook_id}/test", {}),
        ("GET", f"/api/v1/hooks/{hook_id}/attempts", None),
        ("GET", f"/api/v1/hooks/{hook_id}/failed", None),
        ("POST", f"/api/v1/hooks/{hook_id}/failed/replay", {}),
        ("POST", f"/api/v1/hooks/{hook_id}/failed/replay", {"ids": [owned["batch"]]}),
        ("DELETE", f"/api/v1/hooks/{hook_id}", None),
    ]
    for method, path, body in calls:
        response = client.request(method, path, json=body, headers=intruder)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
        # the same answer as for a hook that does not exist at all: nothing confirms the id is taken
        assert response.json() == {"detail": [{"loc": ["path", "id"], "msg": f"hook {hook_id} not found",
                                               "type": "not_found"}]}
        assert "owner" not in response.text
    assert client.get("/api/v1/hooks", headers=intruder).json() == []
    # the owner's hook, its failed batch and its attempts are untouched
    assert client.get(f"/api/v1/hooks/{hook_id}", headers=owner).json() == owned["hook"]
    assert [b["id"] for b in client.get(f"/api/v1/hooks/{hook_id}/failed", headers=owner).json()] == [owned["batch"]]
    assert len(client.get(f"/api/v1/hooks/{hook_id}/attempts", headers=owner).json()) == 1
    with app.state.sessions() as session:
        assert session.scalar(select(Delivery.status).where(Delivery.id == owned["batch"])) == "failed"
    assert connects == []  # the intruder's test send went nowhere


def test_another_accounts_catalog_and_profiles_are_invisible_and_its_writes_land_in_its_own_account(
    client: TestClient, owner: dict[str, str], intruder: dict[str, str], owned: dict[str, Any]
) -> None:
    assert client.get("/api/v1/catalog/campaigns/973", headers=intruder).status_code == 404
    assert client.get("/api/v1/catalog/campaigns", headers=intruder).json() == []
    assert client.delete("/api/v1/catalog/campaigns/973", headers=intruder).status_code == 404
    assert client.get("/api/v1/databases/111/profiles/p1", headers=intruder).status_code == 404
    assert client.delete("/api/v1/databases/111/profiles/p1", headers=intruder).status_code == 404
    # writing the same ids creates the intruder's own copies, never overwrites the owner's
    client.put("/api/v1/catalog/campaigns/973", json={"name": "intruder's"}, headers=intruder)
    client.put("/api/v1/databases/111/profiles/p1", json={"fields": {"email": "i@x"}}, headers=intruder)
    client.post("/api/v1/databases/111/profiles", json={"profiles": [{"profile_id": "p1", "fields": {"email": "i@x"}}]},
                headers=intruder)
    assert client.get("/api/v1/catalog/campaigns/973", headers=owner).json()["name"] == "owner's campaign"
    assert client.get("/api/v1/databases/111/profiles/p1", headers=owner).json()["fields"] == {"email": "o@x"}
    assert client.get("/api/v1/catalog/campaigns/973", headers=intruder).json()["name"] == "intruder's"


def test_a_token_cannot_send_events_on_behalf_of_another_account(
    client: TestClient, intruder: dict[str, str], owned: dict[str, Any]
) -> None:
    response = client.post("/api/v1/events", json=[event(1)], headers=intruder)  # event(1) is account 23's
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == [0, "account_id"]
