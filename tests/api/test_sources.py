"""/sources: validation naming the field, tenancy, write-only secrets, stop/delete, signed links."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    reply = client.post("/api/v1/sources", json={"name": "src", "kind": "pixel", **body}, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def locs(reply: Any) -> list[list[Any]]:
    return [d["loc"] for d in reply.json()["detail"]]


def test_a_new_source_has_the_contract_defaults_an_unguessable_key_and_its_kinds_urls(
    client: TestClient, admin: dict[str, str]
) -> None:
    site = create(client, admin, kind="site", allowed_origins=["https://Shop.example/"])
    assert site["active"] is True
    assert site["cookie_name"] == "ah_vid"
    assert site["anonymize_ip"] is True
    assert site["respect_do_not_track"] is True
    assert site["auth"] == {"type": "none"}
    assert site["event_types"] == ["page_view", "site_event", "identify"]
    assert site["allowed_origins"] == ["https://shop.example"]
    assert site["key"].startswith("src_")
    assert len(site["key"]) == 30  # 128 bits in base32
    assert site["urls"] == {
        "script": f"http://testserver/t/{site['key']}/s.js",
        "collect": f"http://testserver/t/{site['key']}/collect",
    }
    assert create(client, admin)["event_types"] == ["pixel"]
    assert create(client, admin, kind="redirect")["event_types"] == ["click"]
    assert create(client, admin)["key"] != site["key"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"kind": "webhook"}, ["body", "event_types"]),
        ({"kind": "beacon"}, ["body", "kind"]),
        ({"event_types": ["opened"]}, ["body", "event_types", 0]),
        ({"allowed_origins": ["https://shop.example/path"]}, ["body", "allowed_origins", 0]),
        ({"allowed_hosts": ["shop.example:443"]}, ["body", "allowed_hosts", 0]),
        ({"allowed_hosts": ["*"]}, ["body", "allowed_hosts", 0]),
        ({"cookie_name": "a b"}, ["body", "cookie_name"]),
        ({"cookie_name": "x" * 65}, ["body", "cookie_name"]),
        ({"list_id": -1}, ["body", "list_id"]),
        ({"list_id": "111"}, ["body", "list_id"]),
        ({"secret": "short"}, ["body", "secret"]),
        ({"auth": {"type": "standard_webhooks", "secret": "no"}}, ["body", "auth", "standard_webhooks", "secret"]),
        ({"auth": {"type": "basic", "username": "a:b", "password": "p"}}, ["body", "auth", "basic", "username"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "a\x00b"}, ["body", "name"]),
        ({"secret": "s" * 20 + "\x00"}, ["body", "secret"]),
        ({"surprise": 1}, ["body", "surprise"]),
        ({"allowed_hosts": ["h.example"] * 101}, ["body", "allowed_hosts"]),
    ],
)
def test_invalid_settings_are_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], loc: list[Any]
) -> None:
    reply = client.post("/api/v1/sources", json={"name": "src", "kind": "pixel", **body}, headers=admin)
    assert reply.status_code == 422, reply.text
    assert loc in locs(reply)
    assert client.get("/api/v1/sources", headers=admin).json() == []


def test_secrets_are_write_only_and_kept_when_sent_back_masked(client: TestClient, admin: dict[str, str]) -> None:
    source = create(client, admin, kind="webhook", event_types=["open"], secret="s" * 32,
                    auth={"type": "standard_webhooks", "secret": WHSEC})
    assert source["secret"] == "***"
    assert source["auth"] == {"type": "standard_webhooks", "secret": "***"}
    assert WHSEC not in client.get(f"/api/v1/sources/{source['id']}", headers=admin).text
    # sending the GET body back (masked secrets) changes nothing but the name
    body = {k: source[k] for k in ("kind", "event_types", "auth", "secret")} | {"name": "renamed"}
    reply = client.patch(f"/api/v1/sources/{source['id']}", json=body, headers=admin)
    assert reply.status_code == 200, reply.text
    assert reply.json()["name"] == "renamed"
    # "***" for a secret that was never stored is refused
    reply = client.patch(f"/api/v1/sources/{source['id']}",
                         json={"auth": {"type": "basic", "username": "u", "password": "***"}}, headers=admin)
    assert reply.status_code == 422
    assert ["body", "auth", "password"] in locs(reply)


def test_kind_cannot_change_and_patch_merges(client: TestClient, admin: dict[str, str]) -> None:
    source = create(client, admin, allowed_hosts=["a.example"])
    reply = client.patch(f"/api/v1/sources/{source['id']}", json={"kind": "site"}, headers=admin)
    assert reply.status_code == 422
    assert locs(reply) == [["body", "kind"]]
    reply = client.patch(f"/api/v1/sources/{source['id']}", json={"active": False, "list_id": 7}, headers=admin)
    assert reply.json()["active"] is False
    assert reply.json()["list_id"] == 7
    assert reply.json()["allowed_hosts"] == ["a.example"]


def test_another_account_cannot_see_change_delete_or_sign_with_a_source(
    client: TestClient, admin: dict[str, str], other_admin: dict[str, str], ingest: dict[str, str]
) -> None:
    source = create(client, admin, kind="redirect")
    path = f"/api/v1/sources/{source['id']}"
    assert client.get("/api/v1/sources", headers=other_admin).json() == []
    assert client.get(path, headers=other_admin).status_code == 404
    assert client.patch(path, json={"active": False}, headers=other_admin).status_code == 404
    assert client.delete(path, headers=other_admin).status_code == 404
    assert client.post(f"{path}/links", json={"to": "https://x.example/"}, headers=other_admin).status_code == 404
    assert client.get("/api/v1/sources", headers=ingest).status_code == 403
    assert client.get("/api/v1/sources").status_code == 401
    assert client.get(path, headers=admin).json()["active"] is True


def test_delete_is_204_then_404(client: TestClient, admin: dict[str, str]) -> None:
    source = create(client, admin)
    assert client.delete(f"/api/v1/sources/{source['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/sources/{source['id']}", headers=admin).status_code == 404
    assert client.delete(f"/api/v1/sources/{source['id']}", headers=admin).status_code == 404


def test_a_signed_link_redirects_and_any_change_to_it_is_400(client: TestClient, admin: dict[str, str]) -> None:
    source = create(client, admin, kind="redirect")
    reply = client.post(f"/api/v1/sources/{source['id']}/links",
                        json={"to": "https://other.example/p?q=1", "params": {"campaign_id": 5, "utm": "x"}},
                        headers=admin)
    assert reply.status_code == 201, reply.text
    url = reply.json()["url"]
    assert url.startswith(source["urls"]["redirect"] + "?")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["to"] == "https://other.example/p?q=1"
    assert query["campaign_id"] == "5"
    follow = client.get(url, follow_redirects=False)
    assert follow.status_code == 302
    assert follow.headers["location"] == "https://other.example/p?q=1"
    for tampered in (url.replace("campaign_id=5", "campaign_id=6"), url + "&extra=1",
                     url.replace("other.example", "evil.example"), url[:-3] + "AAA"):
        bad = client.get(tampered, follow_redirects=False)
        assert bad.status_code == 400, tampered
        assert "location" not in bad.headers


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"to": "javascript:alert(1)"}, ["body", "to"]),
        ({"to": "//evil.example/"}, ["body", "to"]),
        ({"to": "https://x.example/", "params": {"sig": "1"}}, ["body", "params"]),
        ({"to": "https://x.example/", "params": {f"p{i}": "v" for i in range(65)}}, ["body", "params"]),
        ({"to": "https://x.example/", "params": {"p": "v" * 2049}}, ["body", "params", "p"]),
    ],
)
def test_links_to_unsafe_targets_or_with_unbounded_params_are_refused(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], loc: list[Any]
) -> None:
    source = create(client, admin, kind="redirect")
    reply = client.post(f"/api/v1/sources/{source['id']}/links", json=body, headers=admin)
    assert reply.status_code == 422, reply.text
    assert loc in [found[: len(loc)] for found in locs(reply)]


def test_only_redirect_sources_sign_links(client: TestClient, admin: dict[str, str]) -> None:
    source = create(client, admin)
    reply = client.post(f"/api/v1/sources/{source['id']}/links", json={"to": "https://x.example/"}, headers=admin)
    assert reply.status_code == 422
    assert locs(reply) == [["path", "id"]]
