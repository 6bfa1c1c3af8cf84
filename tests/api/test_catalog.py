"""/api/v1/catalog/{kind}: the names templates show, per account."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.storage.tables import CatalogEntry
from actionhooks.templating import CATALOG_KINDS


def locs(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize("kind", CATALOG_KINDS)
def test_put_then_get_and_list_an_entry_of_every_kind(client: TestClient, admin: dict[str, str], kind: str) -> None:
    response = client.put(f"/api/v1/catalog/{kind}/7", json={"name": "Seven"}, headers=admin)
    assert response.status_code == 200
    entry = {"kind": kind, "id": 7, "name": "Seven", "subid": None, "subject": None}
    assert response.json() == entry
    assert client.get(f"/api/v1/catalog/{kind}/7", headers=admin).json() == entry
    assert client.get(f"/api/v1/catalog/{kind}", headers=admin).json() == [entry]


def test_campaigns_carry_a_subid_and_messages_a_subject(client: TestClient, admin: dict[str, str]) -> None:
    campaign = client.put("/api/v1/catalog/campaigns/973", json={"name": "Spring", "subid": "s-24"}, headers=admin)
    assert campaign.json()["subid"] == "s-24"
    message = client.put("/api/v1/catalog/messages/5", json={"name": "Hello", "subject": "Hi!"}, headers=admin)
    assert message.json()["subject"] == "Hi!"


def test_a_second_put_replaces_the_entry(client: TestClient, admin: dict[str, str]) -> None:
    client.put("/api/v1/catalog/campaigns/1", json={"name": "Old", "subid": "old"}, headers=admin)
    client.put("/api/v1/catalog/campaigns/1", json={"name": "New"}, headers=admin)
    assert client.get("/api/v1/catalog/campaigns", headers=admin).json() == [
        {"kind": "campaigns", "id": 1, "name": "New", "subid": None, "subject": None}
    ]


def test_another_accounts_entries_are_invisible(
    client: TestClient, admin: dict[str, str], other_admin: dict[str, str]
) -> None:
    client.put("/api/v1/catalog/segments/3", json={"name": "theirs"}, headers=other_admin)
    assert client.get("/api/v1/catalog/segments", headers=admin).json() == []
    for method in ("GET", "DELETE"):
        response = client.request(method, "/api/v1/catalog/segments/3", headers=admin)
        assert response.status_code == 404
        assert locs(response) == [["path", "id"]]
    assert client.get("/api/v1/catalog/segments/3", headers=other_admin).status_code == 200


def test_delete_removes_the_entry(client: TestClient, admin: dict[str, str]) -> None:
    client.put("/api/v1/catalog/pixels/2", json={"name": "p"}, headers=admin)
    assert client.delete("/api/v1/catalog/pixels/2", headers=admin).status_code == 204
    assert client.get("/api/v1/catalog/pixels/2", headers=admin).status_code == 404


@pytest.mark.parametrize(
    "case",
    [
        ("/api/v1/catalog/lists/1", {"name": "x"}, ["path", "kind"]),
        ("/api/v1/catalog/campaigns/x", {"name": "x"}, ["path", "id"]),
        ("/api/v1/catalog/campaigns/-1", {"name": "x"}, ["path", "id"]),
        ("/api/v1/catalog/campaigns/1", {}, ["body", "name"]),
        ("/api/v1/catalog/campaigns/1", {"name": 5}, ["body", "name"]),
        ("/api/v1/catalog/campaigns/1", {"name": "x", "title": "y"}, ["body", "title"]),
        ("/api/v1/catalog/resources/1", {"name": "x", "subid": "s"}, ["body", "subid"]),
        ("/api/v1/catalog/campaigns/1", {"name": "x", "subject": "s"}, ["body", "subject"]),
    ],
)
def test_an_invalid_entry_is_422_naming_the_field_and_nothing_is_stored(
    app: FastAPI, client: TestClient, admin: dict[str, str], case: tuple[str, dict[str, Any], list[Any]]
) -> None:
    path, body, loc = case
    response = client.put(path, json=body, headers=admin)
    assert response.status_code == 422
    assert loc in locs(response)
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CatalogEntry)) == 0


def test_listing_an_unknown_kind_is_422_naming_it(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get("/api/v1/catalog/lists", headers=admin)
    assert response.status_code == 422
    assert locs(response) == [["path", "kind"]]
