"""The console's Sources pages over plain HTTP: forms that store what the REST API would, the API's own
errors next to their field, write-only secrets, tenancy, CSRF, snippets, signed links and the source's
last captured events. Everything is checked against what is stored, through the REST API of the same app."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from actionhooks.storage.sources import CAPTURES_KEPT, SqlSourceRepository, put_captures
from actionhooks.storage.tables import SourceCapture
from tests.console.conftest import FORGERIES, ORIGIN, _token, csrf_of


def source(api: TestClient, **fields: Any) -> dict[str, Any]:
    answer = api.post("/api/v1/sources", json={"name": "Shop site", "kind": "site", **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def source_form(csrf: str, **fields: Any) -> dict[str, Any]:
    form = {
        "csrf": csrf,
        "name": "Shop site",
        "kind": "site",
        "active": "on",
        "list_id": "111",
        "event_types": "",
        "allowed_origins": "https://shop.example\nhttps://www.shop.example",
        "allowed_hosts": "",
        "cookie_name": "ah_vid",
        "anonymize_ip": "on",
        "respect_do_not_track": "on",
        "auth_type": "none",
        "auth_username": "",
        "auth_password": "",
        "auth_secret": "",
        "secret": "",
    }
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


def stored(app: FastAPI, account_id: int, source_id: int) -> Any:
    return SqlSourceRepository(app.state.sessions).get(account_id, source_id)  # secrets unmasked


def test_the_menu_leads_to_sources_and_its_create_button(console: TestClient) -> None:
    page = console.get("/console/hooks").text
    assert '<a href="/console/sources">Sources</a>' in page
    page = console.get("/console/sources").text
    assert 'aria-current="page">Sources<' in page
    assert ">Create source</a>" in page
    assert "No sources yet." in page


def test_create_from_the_form_stores_what_the_api_would(console: TestClient, api: TestClient) -> None:
    answer = console.post("/console/sources/new", data=source_form(csrf_of(console)), follow_redirects=False)
    assert answer.status_code == 303, answer.text
    [made] = api.get("/api/v1/sources").json()
    assert answer.headers["location"].startswith(f"/console/sources/{made['id']}?")
    assert made["kind"] == "site"
    assert made["list_id"] == 111
    assert made["event_types"] == ["page_view", "site_event", "identify"]  # the kind's defaults
    assert made["allowed_origins"] == ["https://shop.example", "https://www.shop.example"]
    assert (made["anonymize_ip"], made["respect_do_not_track"], made["active"]) == (True, True, True)
    page = html.unescape(console.get(f"/console/sources/{made['id']}").text)
    assert f'<script async src="{made["urls"]["script"]}"></script>' in page  # the site snippet
    assert 'label for="snippet-site">Site snippet<' in page


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"allowed_origins": "https://shop.example/path"}, "allowed_origins", "must be an origin"),
        ({"cookie_name": "bad cookie"}, "cookie_name", "String should match pattern"),
        ({"kind": "webhook"}, "event_types", "a webhook source must list the event types"),
        ({"event_types": "page_view, nonsense"}, "event_types", "unknown event type 'nonsense'"),
        ({"list_id": "eleven"}, "list_id", "valid integer"),
        ({"name": ""}, "name", "at least 1 character"),
        ({"secret": "short"}, "secret", "at least 16 characters"),
        ({"kind": "webhook", "event_types": "deliv", "auth_type": "basic", "auth_username": "mta"},
         "auth_password", "at least 1 character"),
        ({"kind": "webhook", "event_types": "deliv", "auth_type": "standard_webhooks", "auth_secret": "nope"},
         "auth_secret", "whsec_"),
        ({"kind": "ftp"}, "kind", "Input should be"),
    ],
)
def test_the_apis_errors_are_shown_next_to_their_field_and_nothing_is_saved(
    console: TestClient, api: TestClient, fields: dict[str, str], field: str, message: str
) -> None:
    answer = console.post("/console/sources/new", data=source_form(csrf_of(console), **fields))
    assert answer.status_code == 422
    errors = re.findall(r'<p class="field-error" id="err-([a-z_]+)">([^<]*)</p>', answer.text)
    assert any(name == field and message in html.unescape(text) for name, text in errors), errors
    assert f'id="f-{field}"' in answer.text
    assert 'aria-describedby="err-' + field + '"' in answer.text
    assert api.get("/api/v1/sources").json() == []


def test_what_was_typed_is_kept_after_an_error(console: TestClient) -> None:
    form = source_form(csrf_of(console), name="Kept name", allowed_origins="not an origin")
    page = console.post("/console/sources/new", data=form).text
    assert 'value="Kept name"' in page
    assert ">not an origin</textarea>" in page


def test_secrets_are_write_only_and_kept_when_left_empty(console: TestClient, api: TestClient, app: FastAPI) -> None:
    made = source(api, name="MTA", kind="webhook", event_types=["deliv"], secret="link-secret-0123456789",
                  auth={"type": "basic", "username": "mta", "password": "pa55word"})
    page = console.get(f"/console/sources/{made['id']}").text
    assert "pa55word" not in page
    assert "link-secret-0123456789" not in page
    assert "-u &#39;mta:PASSWORD&#39;" in page  # the webhook curl names the password, never shows it
    form = source_form(csrf_of(console), name="MTA renamed", kind=None, event_types="deliv, undeliv",
                       auth_type="basic", auth_username="mta2")
    answer = console.post(f"/console/sources/{made['id']}", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    kept = stored(app, 1, made["id"])
    assert kept.spec.name == "MTA renamed"
    assert kept.spec.event_types == ["deliv", "undeliv"]
    assert kept.spec.auth.model_dump() == {"type": "basic", "username": "mta2", "password": "pa55word"}
    assert kept.spec.secret == "link-secret-0123456789"
    assert kept.spec.kind == "webhook"  # a kind field sent anyway changes nothing


def test_switching_to_an_auth_without_a_stored_secret_asks_for_it(console: TestClient, api: TestClient) -> None:
    made = source(api, name="MTA", kind="webhook", event_types=["deliv"],
                  auth={"type": "basic", "username": "mta", "password": "pa55word"})
    form = source_form(csrf_of(console), name="MTA", event_types="deliv", auth_type="standard_webhooks")
    answer = console.post(f"/console/sources/{made['id']}", data=form)
    assert answer.status_code == 422
    assert 'id="err-auth_secret"' in answer.text
    assert api.get(f"/api/v1/sources/{made['id']}").json()["auth"]["type"] == "basic"


def test_stop_activate_and_delete_ask_first_without_javascript(console: TestClient, api: TestClient) -> None:
    made = source(api)
    csrf = csrf_of(console)
    asked = console.post(f"/console/sources/{made['id']}/stop", data={"csrf": csrf})
    assert "Stop source “Shop site”?" in asked.text
    assert api.get(f"/api/v1/sources/{made['id']}").json()["active"] is True
    done = console.post(f"/console/sources/{made['id']}/stop", data={"csrf": csrf, "confirmed": "yes"})
    assert "Stopped “Shop site”." in done.text
    assert api.get(f"/api/v1/sources/{made['id']}").json()["active"] is False
    console.post(f"/console/sources/{made['id']}/activate", data={"csrf": csrf})
    assert api.get(f"/api/v1/sources/{made['id']}").json()["active"] is True
    console.post(f"/console/sources/{made['id']}/delete", data={"csrf": csrf, "confirmed": "yes"})
    assert api.get(f"/api/v1/sources/{made['id']}").status_code == 404


def test_another_accounts_source_is_404_on_every_page_and_action(app: FastAPI, console: TestClient) -> None:
    other_api = TestClient(app, headers={"Authorization": f"Bearer {_token(app, account_id=2)}"})
    theirs = source(other_api, name="Their source", kind="redirect", allowed_hosts=["their.example"])
    other_api.get(f"/t/{theirs['key']}/r", params={"to": "https://their.example/"}, follow_redirects=False)
    csrf = csrf_of(console)
    assert "Their source" not in console.get("/console/sources").text
    answer = console.get(f"/console/sources/{theirs['id']}")
    assert answer.status_code == 404
    assert "Their source" not in answer.text
    assert theirs["key"] not in answer.text
    assert "no such source" in answer.text
    answer = console.get(f"/console/sources/{theirs['id']}/captures", headers={"HX-Request": "true"})
    assert answer.status_code == 404
    assert "their.example" not in answer.text  # not their captured click either
    for action in ("stop", "delete", "link"):
        data = {"csrf": csrf, "confirmed": "yes", "to": "https://their.example/x"}
        answer = console.post(f"/console/sources/{theirs['id']}/{action}", data=data)
        assert answer.status_code == 404, action
        assert "/t/" not in answer.text  # no signed link of theirs
    answer = console.post(f"/console/sources/{theirs['id']}", data=source_form(csrf, name="hijacked", kind=None))
    assert answer.status_code == 404
    stored_theirs = other_api.get(f"/api/v1/sources/{theirs['id']}").json()
    assert (stored_theirs["name"], stored_theirs["active"]) == ("Their source", True)


@pytest.mark.parametrize(("data", "headers"), FORGERIES)
def test_a_forged_post_changes_nothing(
    console: TestClient, api: TestClient, data: dict[str, str], headers: dict[str, str]
) -> None:
    mine = source(api)
    if data.get("csrf") == "CSRF":
        data = {**data, "csrf": csrf_of(console)}
    for action in ("delete", "stop"):
        answer = console.post(f"/console/sources/{mine['id']}/{action}", data=data, headers=headers)
        assert answer.status_code == 403
        assert "nothing was changed" in answer.text
    forged = {**source_form(""), **data}
    assert console.post("/console/sources/new", data=forged, headers=headers).status_code == 403
    answer = console.post(f"/console/sources/{mine['id']}", data={**forged, "name": "Forged"}, headers=headers)
    assert answer.status_code == 403
    assert [(s["id"], s["name"], s["active"]) for s in api.get("/api/v1/sources").json()] == [
        (mine["id"], "Shop site", True)
    ]


def test_a_signed_link_is_made_by_the_apis_code_and_redirects(console: TestClient, api: TestClient) -> None:
    made = source(api, name="Links", kind="redirect", allowed_hosts=["shop.example"])
    page = console.post(f"/console/sources/{made['id']}/link",
                        data={"csrf": csrf_of(console), "to": "https://partner.example/offer",
                              "params": "campaign_id=973\nlink_id=3"})
    assert page.status_code == 200
    url = html.unescape(re.search(r'<textarea id="snippet-link"[^>]*>([^<]+)</textarea>', page.text).group(1))
    via_api = api.post(f"/api/v1/sources/{made['id']}/links",
                       json={"to": "https://partner.example/offer", "params": {"campaign_id": "973", "link_id": "3"}})
    assert url == via_api.json()["url"]  # the same code, the same signature
    parts = urlsplit(url)
    answer = api.get(parts.path, params=parse_qsl(parts.query), follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (302, "https://partner.example/offer")


def test_an_unsafe_link_target_is_refused_next_to_its_field(console: TestClient, api: TestClient) -> None:
    made = source(api, name="Links", kind="redirect")
    page = console.post(f"/console/sources/{made['id']}/link",
                        data={"csrf": csrf_of(console), "to": "javascript:alert(1)", "params": ""})
    assert page.status_code == 422
    assert 'id="link-error">only http and https targets are followed<' in page.text
    assert 'id="snippet-link"' not in page.text
    too_long = console.post(f"/console/sources/{made['id']}/link",
                            data={"csrf": csrf_of(console), "to": "https://partner.example/" + "a" * 3000})
    assert too_long.status_code == 422
    assert 'id="link-error">to: String should have at most 2048 characters<' in too_long.text
    pixel = source(api, name="Opens", kind="pixel")
    wrong_kind = console.post(f"/console/sources/{pixel['id']}/link",
                              data={"csrf": csrf_of(console), "to": "https://partner.example/"})
    assert "links are signed by redirect sources; this one is pixel" in wrong_kind.text


def test_the_last_captured_events_are_listed_newest_first(console: TestClient, api: TestClient) -> None:
    made = source(api, name="Opens", kind="pixel", event_types=["open"])
    mine = f"/t/{made['key']}/p.gif"
    for profile in ("p-1", "p-2"):
        assert api.get(mine, params={"profile_id": profile}, headers={"user-agent": "Mail/1.0"}).status_code == 200
    page = console.get(f"/console/sources/{made['id']}").text
    rows = re.findall(r'<span class="tag">open</span></td>\s*<td class="target">([^<]+)</td>', page)
    assert rows == ["p-2", "p-1"]
    assert "Last captured events <span class=\"count\">2</span>" in page
    fragment = console.get(f"/console/sources/{made['id']}/captures", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert 'hx-trigger="every 5s"' in fragment.text  # the page polls this section
    assert re.findall(r'<span class="tag">open</span></td>\s*<td class="target">([^<]+)</td>', fragment.text) == [
        "p-2", "p-1"]
    assert html.unescape(f'<img src="{made["urls"]["pixel"]}?profile_id={{{{profile_id}}}}"') in html.unescape(page)


def test_recent_captures_are_bounded_per_source_and_go_with_the_source(app: FastAPI, api: TestClient) -> None:
    made, other = source(api, name="Opens", kind="pixel")["id"], source(api, name="Other", kind="pixel")["id"]
    repo = SqlSourceRepository(app.state.sessions)

    def pixels(numbers: range) -> list[dict[str, Any]]:
        return [{"event_id": f"e{i}", "event_type": "pixel", "event_data": {"url": "u" * 5000}} for i in numbers]

    with app.state.sessions() as session:
        put_captures(session, 1, {made: pixels(range(70)), other: pixels(range(1))}, 1.0)  # one batch: its newest 50
        session.commit()
    assert [c["event_id"] for c in repo.captures(1, made)] == [f"e{i}" for i in range(69, 19, -1)]
    with app.state.sessions() as session:
        for i in range(70, 130):  # one event per transaction; the writer asks for a prune at the last one
            put_captures(session, 1, {made: pixels(range(i, i + 1))}, float(i), prune=[made] if i == 129 else [])
        session.commit()
        rows = session.scalars(select(SourceCapture.id).where(SourceCapture.source_id == made)).all()
    assert len(rows) == CAPTURES_KEPT
    kept = repo.captures(1, made)
    assert [c["event_id"] for c in kept] == [f"e{i}" for i in range(129, 129 - CAPTURES_KEPT, -1)]
    assert all(len(str(c["url"])) == 300 for c in kept)  # summaries are bounded
    assert [c["event_id"] for c in repo.captures(1, other)] == ["e0"]
    assert api.delete(f"/api/v1/sources/{made}").status_code == 204
    with app.state.sessions() as session:
        assert set(session.scalars(select(SourceCapture.source_id))) == {other}


def test_the_sources_pages_need_a_session(app: FastAPI) -> None:
    with TestClient(app, base_url=ORIGIN) as anonymous:
        for path in ("/console/sources", "/console/sources/new", "/console/sources/1", "/console/sources/1/captures"):
            answer = anonymous.get(path, follow_redirects=False)
            assert (answer.status_code, answer.headers["location"]) == (303, "/console/login")
