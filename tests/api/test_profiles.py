"""/api/v1/databases/{list_id}/profiles: the profile fields hooks copy, per account and database."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.api.routes.profiles import BULK_MAX
from actionhooks.storage.tables import Profile

BASE = "/api/v1/databases/10/profiles"


def locs(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


def stored_count(app: FastAPI) -> int:
    with app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(Profile))


def test_put_get_replace_and_delete_one_profile(client: TestClient, admin: dict[str, str]) -> None:
    created = client.put(f"{BASE}/a1b2", json={"fields": {"email": "ann@x", "tags": ["vip"]}}, headers=admin)
    assert created.status_code == 200
    assert created.json()["fields"] == {"email": "ann@x", "tags": ["vip"]}
    assert created.json()["updated_at"].endswith("Z")
    client.put(f"{BASE}/a1b2", json={"fields": {"_fname": "Ann"}}, headers=admin)
    read = client.get(f"{BASE}/a1b2", headers=admin)
    assert read.json() | {"updated_at": None} == {
        "list_id": 10, "profile_id": "a1b2", "fields": {"_fname": "Ann"}, "updated_at": None
    }
    assert client.delete(f"{BASE}/a1b2", headers=admin).status_code == 204
    missing = client.get(f"{BASE}/a1b2", headers=admin)
    assert missing.status_code == 404
    assert locs(missing) == [["path", "profile_id"]]
    assert client.delete(f"{BASE}/a1b2", headers=admin).status_code == 404


def test_profiles_are_scoped_by_account_and_database(
    client: TestClient, admin: dict[str, str], other_admin: dict[str, str]
) -> None:
    client.put(f"{BASE}/p", json={"fields": {"who": "theirs"}}, headers=other_admin)
    assert client.get(f"{BASE}/p", headers=admin).status_code == 404
    assert client.delete(f"{BASE}/p", headers=admin).status_code == 404
    client.put(f"{BASE}/p", json={"fields": {"who": "mine"}}, headers=admin)
    assert client.get("/api/v1/databases/11/profiles/p", headers=admin).status_code == 404
    assert client.get(f"{BASE}/p", headers=other_admin).json()["fields"] == {"who": "theirs"}
    assert client.get(f"{BASE}/p", headers=admin).json()["fields"] == {"who": "mine"}


def test_bulk_upsert_stores_every_profile(client: TestClient, admin: dict[str, str]) -> None:
    client.put(f"{BASE}/p0", json={"fields": {"old": True}}, headers=admin)
    body = {"profiles": [{"profile_id": f"p{i}", "fields": {"n": i}} for i in range(BULK_MAX)]}
    response = client.post(BASE, json=body, headers=admin)
    assert response.status_code == 200
    assert response.json() == {"upserted": BULK_MAX}
    assert client.get(f"{BASE}/p0", headers=admin).json()["fields"] == {"n": 0}
    assert client.get(f"{BASE}/p{BULK_MAX - 1}", headers=admin).json()["fields"] == {"n": BULK_MAX - 1}


@pytest.mark.parametrize(
    "case",
    [
        ({"profiles": []}, ["body", "profiles"]),
        ({"profiles": [{"profile_id": "ok", "fields": {}}] * 2}, ["body", "profiles", 1, "profile_id"]),
        ({"profiles": [{"profile_id": f"p{i}", "fields": {}} for i in range(BULK_MAX + 1)]}, ["body", "profiles"]),
        ({"profiles": [{"profile_id": "ok", "fields": {}}, {"profile_id": "", "fields": {}}]},
         ["body", "profiles", 1, "profile_id"]),
        ({"profiles": [{"profile_id": "ok", "fields": {}}, {"profile_id": "x"}]}, ["body", "profiles", 1, "fields"]),
        ({"profiles": [{"profile_id": "ok", "fields": []}]}, ["body", "profiles", 0, "fields"]),
        ({"people": []}, ["body", "people"]),
    ],
)
def test_an_invalid_bulk_is_422_naming_the_item_and_stores_nothing(
    app: FastAPI, client: TestClient, admin: dict[str, str], case: tuple[dict[str, Any], list[Any]]
) -> None:
    body, loc = case
    response = client.post(BASE, json=body, headers=admin)
    assert response.status_code == 422
    assert loc in locs(response)
    assert stored_count(app) == 0


@pytest.mark.parametrize(
    "case",
    [
        ("/api/v1/databases/x/profiles/p", {"fields": {}}, ["path", "list_id"]),
        ("/api/v1/databases/-1/profiles/p", {"fields": {}}, ["path", "list_id"]),
        (f"{BASE}/{'p' * 201}", {"fields": {}}, ["path", "profile_id"]),
        (f"{BASE}/p%0A", {"fields": {}}, ["path", "profile_id"]),
        (f"{BASE}/p", {}, ["body", "fields"]),
        (f"{BASE}/p", {"fields": "email"}, ["body", "fields"]),
        (f"{BASE}/p", {"fields": {}, "extra": 1}, ["body", "extra"]),
    ],
)
def test_an_invalid_profile_is_422_naming_the_field_and_stores_nothing(
    app: FastAPI, client: TestClient, admin: dict[str, str], case: tuple[str, dict[str, Any], list[Any]]
) -> None:
    path, body, loc = case
    response = client.put(path, json=body, headers=admin)
    assert response.status_code == 422
    assert loc in locs(response)
    assert stored_count(app) == 0
