"""The console over plain HTTP (no browser, no JavaScript): sessions, CSRF, tenancy, headers, forms.

What a careless or hostile client sends: no session, a foreign account's hook, a missing or wrong
CSRF token, a cross-site Origin, an ingest token, template bombs in the preview, secrets echoed back.
Each is checked against what is stored, through the REST API of the same app.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.console.session import COOKIE
from actionhooks.storage.console_sessions import MAX_SESSIONS_PER_TOKEN, open_session
from actionhooks.storage.tables import ConsoleSession
from actionhooks.storage.tables import Hook as HookRow
from tests.console.conftest import FORGERIES, ORIGIN, _token, csrf_of


def hook(api: TestClient, **changes: Any) -> dict[str, Any]:
    body = {
        "name": "CRM",
        "actions": ["open"],
        "delivery": {"type": "http", "url": "https://crm.example.com/h", "auth": {"type": "bearer", "token": "s3cret"}},
        **changes,
    }
    answer = api.post("/api/v1/hooks", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def editor_form(csrf: str, **fields: Any) -> dict[str, Any]:
    form = {
        "csrf": csrf,
        "name": "Made in the console",
        "active": "on",
        "actions": ["open", "click"],
        "value_key": ["id"],
        "value_value": ["{{uuid}}"],
        "delivery_type": "http",
        "http.url": "https://crm.example.com/hook",
        "http.method": "POST",
        "http.max_batch_size": "50",
        "http.auth.type": "none",
    }
    form.update(fields)
    return form


def test_login_sets_an_httponly_samesite_strict_cookie_scoped_to_the_console(app: FastAPI) -> None:
    with TestClient(app, base_url=ORIGIN) as client:
        answer = client.post("/console/login", data={"token": _token(app)}, follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie
    assert "secure" not in cookie  # plain HTTP here; HTTPS adds Secure (next test)


def test_login_over_https_marks_the_cookie_secure(app: FastAPI) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        answer = client.post("/console/login", data={"token": _token(app)}, follow_redirects=False)
    assert "; secure" in answer.headers["set-cookie"].lower()


@pytest.mark.parametrize(("token", "message"), [("ah_wrong", "not an admin token"), ("", "not an admin token")])
def test_a_bad_token_gets_the_login_page_again(app: FastAPI, token: str, message: str) -> None:
    with TestClient(app, base_url=ORIGIN) as client:
        answer = client.post("/console/login", data={"token": token})
        assert answer.status_code == 401
        assert message in answer.text
        assert "set-cookie" not in answer.headers


def test_an_ingest_token_does_not_open_the_console(app: FastAPI) -> None:
    with TestClient(app, base_url=ORIGIN) as client:
        answer = client.post("/console/login", data={"token": _token(app, scope="ingest")})
        assert answer.status_code == 401
        assert "ingest token" in answer.text
        client.cookies.set("actionhooks_console", _token(app, scope="ingest"), path="/console")
        assert client.get("/console/hooks", follow_redirects=False).headers["location"] == "/console/login"


def test_a_login_posted_from_another_site_is_refused(app: FastAPI) -> None:
    with TestClient(app, base_url=ORIGIN) as client:
        answer = client.post("/console/login", data={"token": _token(app)}, headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    "path", ["/console/hooks", "/console/hooks/new", "/console/hooks/1", "/console/hooks/1/failed"]
)
def test_every_page_needs_a_session(app: FastAPI, path: str) -> None:
    with TestClient(app, base_url=ORIGIN) as client:
        answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


def test_console_pages_and_files_carry_the_security_headers(console: TestClient) -> None:
    for path in ("/console/hooks", "/console/login", "/console/static/console.js", "/console/hooks/999"):
        answer = console.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"


def test_pages_load_scripts_only_from_the_package(console: TestClient) -> None:
    page = console.get("/console/hooks/new").text
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts
    assert all(re.search(r'src="/console/static/[\w.]+\.js"', tag) for tag in scripts)
    assert " style=" not in page  # no inline style the CSP would refuse
    assert console.get("/console/static/htmx.min.js").status_code == 200
    assert "Zero-Clause BSD" in console.get("/console/static/htmx.LICENSE").text


def test_another_accounts_hook_is_404_on_every_page_and_action(app: FastAPI, console: TestClient) -> None:
    other_api = TestClient(app, headers={"Authorization": f"Bearer {_token(app, account_id=2)}"})
    theirs = hook(other_api, name="Their hook")
    csrf = csrf_of(console)
    assert "Their hook" not in console.get("/console/hooks").text
    for path in ("", "/attempts", "/failed"):
        answer = console.get(f"/console/hooks/{theirs['id']}{path}")
        assert answer.status_code == 404
        assert "Their hook" not in answer.text
    for action in ("stop", "clone", "test", "failed/replay"):
        answer = console.post(f"/console/hooks/{theirs['id']}/{action}", data={"csrf": csrf, "confirmed": "yes"})
        assert answer.status_code == 404, action
    answer = console.post(f"/console/hooks/{theirs['id']}/delete", data={"csrf": csrf, "confirmed": "yes"})
    assert answer.status_code == 404
    answer = console.post(f"/console/hooks/{theirs['id']}", data=editor_form(csrf, name="hijacked"))
    assert answer.status_code == 404
    stored = other_api.get(f"/api/v1/hooks/{theirs['id']}").json()
    assert stored["name"] == "Their hook"
    assert stored["active"] is True


@pytest.mark.parametrize(("data", "headers"), FORGERIES)
def test_a_forged_post_changes_nothing(
    console: TestClient, api: TestClient, data: dict[str, str], headers: dict[str, str]
) -> None:
    mine = hook(api)
    if data.get("csrf") == "CSRF":
        data = {**data, "csrf": csrf_of(console)}
    for action in ("delete", "stop", "clone"):
        answer = console.post(f"/console/hooks/{mine['id']}/{action}", data=data, headers=headers)
        assert answer.status_code == 403
        assert "nothing was changed" in answer.text
    answer = console.post("/console/hooks/new", data={**editor_form(""), **data}, headers=headers)
    assert answer.status_code == 403
    hooks = api.get("/api/v1/hooks").json()
    assert [(h["id"], h["active"]) for h in hooks] == [(mine["id"], True)]
    assert 'actionhooks_console_refused_total{reason="csrf"} 4.0' in api.get("/metrics").text


def test_the_csrf_token_of_one_session_does_not_work_in_another(app: FastAPI, console: TestClient) -> None:
    with TestClient(app, base_url=ORIGIN) as other:
        other.post("/console/login", data={"token": _token(app)})
        foreign = csrf_of(other)
    assert foreign != csrf_of(console)
    answer = console.post("/console/hooks/new", data=editor_form(foreign))
    assert answer.status_code == 403


def test_create_from_the_form_stores_what_the_api_would(console: TestClient, api: TestClient) -> None:
    answer = console.post(
        "/console/hooks/new",
        data=editor_form(
            csrf_of(console),
            filter_campaigns="973, 974",
            profile_fields="email, _fname",
            **{"http.headers": "X-Tenant: 42\nX-Env: prod", "http.auth.type": "basic",
               "http.auth.username": "crm", "http.auth.password": "pw"},
        ),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    hook_id = int(answer.headers["location"].split("/")[-1].split("?")[0])
    stored = api.get(f"/api/v1/hooks/{hook_id}").json()
    assert stored["name"] == "Made in the console"
    assert stored["actions"] == ["open", "click"]
    assert stored["filters"]["campaigns"] == [973, 974]
    assert stored["custom_data"] == {"profile_fields": ["email", "_fname"], "values": {"id": "{{uuid}}"}}
    assert stored["delivery"]["headers"] == {"X-Tenant": "42", "X-Env": "prod"}
    assert stored["delivery"]["max_batch_size"] == 50
    assert stored["delivery"]["auth"] == {"type": "basic", "username": "crm", "password": "***"}
    assert stored["delivery"]["signing_secret"] == "***"  # generated, as over the API


def test_a_new_hooks_form_starts_from_the_models_defaults(console: TestClient) -> None:
    page = console.get("/console/hooks/new").text
    assert re.search(r'name="rabbitmq_exchange.durable" checked', page)
    assert not re.search(r'name="rabbitmq_exchange.auto_delete" checked', page)
    assert re.search(r'<option value="direct" selected>', page)
    assert re.search(r'name="http.max_batch_size" value="" placeholder="100"', page)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"delivery_type": "kafka", "kafka.bootstrap_servers": "k1:9092,k2:9092", "kafka.topic": "events",
             "kafka.compression": "zstd", "kafka.sasl_mechanism": ""},
            {"type": "kafka", "bootstrap_servers": "k1:9092,k2:9092", "topic": "events", "compression": "zstd",
             "sasl_mechanism": None, "key": "{{profile_id}}"},
        ),
        (
            {"delivery_type": "rabbitmq_exchange", "rabbitmq_exchange.host": "mq.example.com",
             "rabbitmq_exchange.port": "5671", "rabbitmq_exchange.tls": "on", "rabbitmq_exchange.exchange": "ev",
             "rabbitmq_exchange.password": "pw"},
            {"type": "rabbitmq_exchange", "host": "mq.example.com", "port": 5671, "tls": True, "exchange": "ev",
             "durable": False, "password": "***"},
        ),
    ],
)
def test_every_delivery_type_is_edited_through_fields_derived_from_its_model(
    console: TestClient, api: TestClient, fields: dict[str, str], expected: dict[str, Any]
) -> None:
    answer = console.post("/console/hooks/new", data=editor_form(csrf_of(console), **fields), follow_redirects=False)
    assert answer.status_code == 303, answer.text
    hook_id = int(answer.headers["location"].split("/")[-1].split("?")[0])
    delivery = api.get(f"/api/v1/hooks/{hook_id}").json()["delivery"]
    assert {key: delivery[key] for key in expected} == expected
    page = console.get(f"/console/hooks/{hook_id}").text
    assert "pw" not in re.findall(r'name="rabbitmq_exchange.password"[^>]*>', page)[0]


def test_validation_errors_are_shown_next_to_their_fields_and_nothing_is_saved(
    console: TestClient, api: TestClient
) -> None:
    form = editor_form(
        csrf_of(console),
        name="",
        actions=["nope"],
        filter_resources="3, x",
        value_key=["id", "bad"],
        value_value=["{{uuid}}", "{{ unclosed"],
        **{"http.url": "ftp://x", "http.max_batch_size": "0", "http.headers": "Host: evil",
           "http.auth.type": "bearer", "http.auth.token": ""},
    )
    answer = console.post("/console/hooks/new", data=form)
    assert answer.status_code == 422
    page = answer.text
    for field in ("name", "actions", "filter_resources", "http-url", "http-max_batch_size", "http-headers",
                  "http-auth-token"):
        assert f'id="err-{field}"' in page, field
    assert "The hook was not saved." in page
    assert api.get("/api/v1/hooks").json() == []
    # A template error names its key: the service compiles values only once the schema passes
    answer = console.post(
        "/console/hooks/new", data=editor_form(csrf_of(console), value_key=["id", "bad"],
                                               value_value=["{{uuid}}", "{{ unclosed"]),
    )
    assert answer.status_code == 422
    assert 'id="err-value-bad"' in answer.text
    assert "{{ unclosed" in answer.text  # what the user typed is kept
    assert api.get("/api/v1/hooks").json() == []


def test_secrets_are_write_only_and_kept_when_left_empty(console: TestClient, api: TestClient, app: FastAPI) -> None:
    mine = hook(api)
    page = console.get(f"/console/hooks/{mine['id']}").text
    assert "s3cret" not in page
    assert "whsec_" not in page
    answer = console.post(
        f"/console/hooks/{mine['id']}",
        data=editor_form(csrf_of(console), name="Renamed", **{"http.auth.type": "bearer", "http.auth.token": ""}),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    with app.state.sessions() as session:
        stored = session.get(HookRow, mine["id"]).delivery  # what the engine keeps, unmasked
    assert stored["auth"]["token"] == "s3cret"
    assert stored["signing_secret"].startswith("whsec_")
    assert api.get(f"/api/v1/hooks/{mine['id']}").json()["name"] == "Renamed"


def test_without_javascript_add_value_and_confirmation_are_round_trips(console: TestClient, api: TestClient) -> None:
    csrf = csrf_of(console)
    answer = console.post("/console/hooks/new", data=editor_form(csrf, op="add_value"))
    assert answer.status_code == 200
    assert answer.text.count('name="value_key"') == 2
    assert api.get("/api/v1/hooks").json() == []  # adding a row saves nothing
    mine = hook(api)
    answer = console.post(f"/console/hooks/{mine['id']}/delete", data={"csrf": csrf})
    assert "Please confirm" in answer.text
    assert api.get(f"/api/v1/hooks/{mine['id']}").status_code == 200
    console.post(f"/console/hooks/{mine['id']}/delete", data={"csrf": csrf, "confirmed": "yes"})
    assert api.get(f"/api/v1/hooks/{mine['id']}").status_code == 404


def test_activate_stop_and_clone_use_the_hooks_service(console: TestClient, api: TestClient) -> None:
    mine = hook(api)
    csrf = csrf_of(console)
    console.post(f"/console/hooks/{mine['id']}/stop", data={"csrf": csrf, "confirmed": "yes"})
    assert api.get(f"/api/v1/hooks/{mine['id']}").json()["active"] is False
    console.post(f"/console/hooks/{mine['id']}/activate", data={"csrf": csrf})
    assert api.get(f"/api/v1/hooks/{mine['id']}").json()["active"] is True
    answer = console.post(f"/console/hooks/{mine['id']}/clone", data={"csrf": csrf})
    assert "CRM (copy)" in answer.text
    names = [(h["name"], h["active"]) for h in api.get("/api/v1/hooks").json()]
    assert names == [("CRM", True), ("CRM (copy)", False)]


def test_preview_renders_with_the_engines_code_and_reports_errors_by_key(console: TestClient) -> None:
    csrf = csrf_of(console)
    form = editor_form(csrf, sample_action="click", value_key=["who", "when"],
                       value_value=["{{profile_id}}/{{event_type}}", "{{event_date_unix}}"])
    answer = console.post("/console/preview", data=form, headers={"HX-Request": "true"})
    assert answer.status_code == 200
    assert "&#34;who&#34;: &#34;test-profile/click&#34;" in answer.text
    bad = editor_form(csrf, value_key=["ok", "broken"], value_value=["x", "{% for %}"])
    answer = console.post("/console/preview", data=bad)
    assert re.search(r'data-key="broken"', answer.text)
    assert "<pre" not in answer.text


def test_preview_output_is_bounded_like_delivery(app: FastAPI, console: TestClient) -> None:
    limit = app.state.settings.TEMPLATE_MAX_OUTPUT_CHARS
    bomb = f"{{{{ profile_id * {limit * 10} }}}}"
    form = editor_form(csrf_of(console), value_key=["big"], value_value=[bomb])
    answer = console.post("/console/preview", data=form)
    assert answer.status_code == 200
    assert 'data-key="big"' in answer.text
    assert len(answer.text) < 20_000


def test_preview_and_replay_need_the_csrf_token_too(console: TestClient, api: TestClient) -> None:
    mine = hook(api)
    assert console.post("/console/preview", data=editor_form("")).status_code == 403
    assert console.post(f"/console/hooks/{mine['id']}/failed/replay", data={"scope": "all"}).status_code == 403
    assert console.post(f"/console/hooks/{mine['id']}/test", data={}).status_code == 403


def test_logout_ends_the_session(console: TestClient) -> None:
    answer = console.post("/console/logout", data={"csrf": csrf_of(console)}, follow_redirects=False)
    assert answer.status_code == 303
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    assert console.get("/console/hooks", follow_redirects=False).headers["location"] == "/console/login"


def _signed_in(app: FastAPI, token: str) -> TestClient:
    client = TestClient(app, base_url=ORIGIN)
    assert client.post("/console/login", data={"token": token}, headers={"Origin": ORIGIN}).status_code == 200
    return client


def _reaches_the_list(app: FastAPI, cookie: str) -> bool:
    with TestClient(app, base_url=ORIGIN, cookies={COOKIE: cookie}) as other:
        return other.get("/console/hooks", follow_redirects=False).status_code == 200


def test_logout_ends_the_session_for_every_copy_of_the_cookie_and_the_cookie_is_no_api_token(app: FastAPI) -> None:
    admin = _token(app)
    with _signed_in(app, admin) as console:
        cookie = console.cookies[COOKIE]
        # The cookie carries a session secret of its own, which the REST API refuses
        assert cookie != admin
        assert console.get("/api/v1/hooks", headers={"Authorization": f"Bearer {cookie}"}).status_code == 401
        assert _reaches_the_list(app, cookie)  # a copy taken (say, from a shared machine) works until logout
        console.post("/console/logout", data={"csrf": csrf_of(console)})
    assert not _reaches_the_list(app, cookie)
    with _signed_in(app, admin):  # the admin token itself still signs in, and the API still takes it
        pass
    with TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as api:
        assert api.get("/api/v1/hooks").status_code == 200


def test_revoking_the_admin_token_ends_its_console_sessions(app: FastAPI) -> None:
    admin, other_admin = _token(app), _token(app)
    with _signed_in(app, admin) as console, TestClient(app, headers={"Authorization": f"Bearer {other_admin}"}) as api:
        cookie = console.cookies[COOKIE]
        first = api.get("/api/v1/tokens").json()[0]  # oldest first: the one the console signed in with
        assert api.delete(f"/api/v1/tokens/{first['id']}").status_code == 204
    assert not _reaches_the_list(app, cookie)


def test_sign_ins_per_admin_token_are_bounded_the_oldest_session_ending(app: FastAPI) -> None:
    admin = _token(app)
    cookies = []
    for _ in range(MAX_SESSIONS_PER_TOKEN + 1):
        with _signed_in(app, admin) as console:
            cookies.append(console.cookies[COOKIE])
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == MAX_SESSIONS_PER_TOKEN
    assert not _reaches_the_list(app, cookies[0])
    assert _reaches_the_list(app, cookies[1])
    assert _reaches_the_list(app, cookies[-1])


def test_an_expired_session_is_refused_and_removed_at_the_next_sign_in(app: FastAPI) -> None:
    admin = _token(app)
    _, expired = open_session(app.state.sessions, admin, ttl_sec=-1)
    assert expired is not None
    assert not _reaches_the_list(app, expired)
    with _signed_in(app, admin), app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 1  # only the new one


def test_the_list_shows_state_target_and_an_activity_chart(console: TestClient, api: TestClient) -> None:
    hook(api, name="Alpha")
    hook(api, name="Beta", active=False, delivery={"type": "kafka", "bootstrap_servers": "k1:9092", "topic": "ev"})
    page = console.get("/console/hooks").text
    assert "Alpha" in page
    assert "POST https://crm.example.com/h" in page
    assert "k1:9092 → ev" in page
    assert page.count('class="badge on">Active') == 1
    assert page.count('class="badge off">Stopped') == 1
    assert re.search(r'<svg role="img" aria-label="Last hour: 0 events delivered, 0 failed"', page)


def test_replay_selected_without_a_selection_says_so(console: TestClient, api: TestClient) -> None:
    mine = hook(api)
    form = {"csrf": csrf_of(console), "scope": "selected"}
    answer = console.post(f"/console/hooks/{mine['id']}/failed/replay", data=form)
    assert answer.status_code == 200
    assert "Nothing was replayed" in answer.text


def test_saving_the_form_keeps_the_payload_conditions_it_cannot_edit(console: TestClient, api: TestClient) -> None:
    conditions = [{"path": "event_data.params.plan", "op": "eq", "value": "pro"}]
    mine = hook(api, filters={"match": conditions})
    answer = console.post(f"/console/hooks/{mine['id']}", data=editor_form(csrf_of(console), name="Renamed"),
                          follow_redirects=False)
    assert answer.status_code == 303, answer.text
    saved = api.get(f"/api/v1/hooks/{mine['id']}").json()
    assert saved["name"] == "Renamed"
    assert saved["filters"]["match"] == conditions
