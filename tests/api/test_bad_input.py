"""Hostile and broken requests: oversized, deeply nested, undecodable, mistyped, huge and odd unicode.

Each gets a clean 4xx in the one error shape naming what is wrong (never a 500, never a
RecursionError), and a rejected request leaves every table as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.api.app import create_app
from actionhooks.settings import Settings
from actionhooks.storage.tables import Base, Intake
from actionhooks.storage.tokens import create_token
from tests.support.engine import event, postgres_database

EVENTS_LIMIT = 32 * 1024  # room for a 10,000-level body (20 KB)
EVENTS_PER_REQUEST = 10


def row_counts(app: FastAPI) -> dict[str, int]:
    with app.state.sessions() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def raw_event(event_data_x: bytes) -> bytes:
    """An otherwise valid event of account 23 whose event_data.x is the raw JSON `event_data_x`."""
    head = orjson.dumps(event(1))[:-1]  # without the closing brace
    return head + b',"custom_data":{"x":' + event_data_x + b"}}"


def assert_names(response: Any, status: int, loc_prefix: list[Any]) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert any(item["loc"][: len(loc_prefix)] == loc_prefix for item in detail), detail
    assert all(item["msg"] for item in detail), detail


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The API on SQLite and on PostgreSQL (one each: tests compare row counts, not absolute state),
    with small event limits so oversized requests stay cheap."""
    folder = tmp_path_factory.mktemp("bad_input")
    limits = {"EVENTS_MAX_REQUEST_BYTES": EVENTS_LIMIT, "EVENTS_MAX_PER_REQUEST": EVENTS_PER_REQUEST}
    with ExitStack() as stack:
        url = (
            f"sqlite:///{folder / 'api.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_database("actionhooks_bad_input"))
        )
        application = create_app(Settings(DATABASE_URL=url, DATA_DIR=str(folder), BROKER_URL="memory://", **limits))
        yield application
        application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def admin(app: FastAPI) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(app.state.sessions, 23, 'admin')}"}


@pytest.fixture
def hook_id(client: TestClient, admin: dict[str, str]) -> int:
    body = {"name": "target", "actions": ["click"], "delivery": {"type": "http", "url": "http://127.0.0.1:9/"}}
    response = client.post("/api/v1/hooks", json=body, headers=admin)
    assert response.status_code == 201, response.text
    hook: int = response.json()["id"]
    return hook


# Every endpoint that reads a JSON body.
BODY_ENDPOINTS = [
    ("POST", "/api/v1/events"),
    ("POST", "/api/v1/hooks"),
    ("PUT", "/api/v1/hooks/{hook}"),
    ("PATCH", "/api/v1/hooks/{hook}"),
    ("POST", "/api/v1/hooks/{hook}/test"),
    ("POST", "/api/v1/hooks/{hook}/failed/replay"),
    ("PUT", "/api/v1/catalog/campaigns/7"),
    ("PUT", "/api/v1/databases/111/profiles/p1"),
    ("POST", "/api/v1/databases/111/profiles"),
]
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [b'{"name": ', b"{'single': 'quotes'}", b"[1, 2,]", b"\xff\xfe{}", b'{"a": "\xc3\x28"}', nested(10_000)],
    ids=["truncated", "single-quotes", "trailing-comma", "bom-garbage", "invalid-utf8", "10000-levels"],
)
def test_a_body_that_is_not_json_is_a_4xx_naming_the_body_on_every_endpoint_and_stores_nothing(
    app: FastAPI, client: TestClient, admin: dict[str, str], *, hook_id: int, method: str, path: str, body: bytes
) -> None:
    before = row_counts(app)
    response = client.request(method, path.format(hook=hook_id), content=body, headers={**admin, **JSON})
    assert response.status_code in (400, 422), response.text
    assert_names(response, response.status_code, ["body"])
    assert row_counts(app) == before


@pytest.mark.parametrize("depth", [300, 1023, 10_000])
def test_a_deeply_nested_event_is_a_clean_422_and_nothing_is_queued(
    app: FastAPI, client: TestClient, admin: dict[str, str], depth: int
) -> None:
    # 300 parses (orjson reads 1,024 levels) but cannot be written back (254): it used to be a 500
    before = row_counts(app)
    response = client.post("/api/v1/events", content=raw_event(nested(depth)), headers={**admin, **JSON})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] in (0, "body")
    assert row_counts(app) == before


def test_an_events_body_over_the_limit_is_413_by_length_or_by_counting_and_nothing_is_queued(
    app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    before = row_counts(app)
    big = orjson.dumps([event(1, profile_id="p" * EVENTS_LIMIT)])
    assert_names(client.post("/api/v1/events", content=big, headers={**admin, **JSON}), 413, ["body"])

    def chunks() -> Iterator[bytes]:
        yield big[:100]
        yield big[100:]

    assert_names(client.post("/api/v1/events", content=chunks(), headers={**admin, **JSON}), 413, ["body"])
    assert row_counts(app) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_events_in_another_content_type_are_415_naming_the_header(
    app: FastAPI, client: TestClient, admin: dict[str, str], content_type: str
) -> None:
    before = row_counts(app)
    headers = {**admin, "Content-Type": content_type}
    response = client.post("/api/v1/events", content=orjson.dumps([event(1)]), headers=headers)
    assert_names(response, 415, ["header", "content-type"])
    assert row_counts(app) == before


@pytest.mark.parametrize(("method", "path"), [e for e in BODY_ENDPOINTS if e[1] != "/api/v1/events"])
def test_a_configuration_body_sent_as_text_is_422_naming_the_body(
    app: FastAPI, client: TestClient, admin: dict[str, str], *, hook_id: int, method: str, path: str
) -> None:
    before = row_counts(app)
    headers = {**admin, "Content-Type": "text/plain"}
    response = client.request(method, path.format(hook=hook_id), content=b'{"ids": []}', headers=headers)
    assert_names(response, 422, ["body"])
    assert row_counts(app) == before


def test_more_events_than_allowed_per_request_are_refused_as_a_whole(
    app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    before = row_counts(app)
    events = [event(i) for i in range(EVENTS_PER_REQUEST + 1)]
    response = client.post("/api/v1/events", json=events[:2] + [{}] * (EVENTS_PER_REQUEST - 1), headers=admin)
    assert_names(response, 422, ["body"])
    assert "too many events" in response.json()["detail"][0]["msg"]
    assert row_counts(app) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "loc"),
    [
        ("POST", "/api/v1/hooks", {"actions": ["click"] * 100_000}, ["body", "actions"]),
        ("POST", "/api/v1/hooks", {"filters": {"campaigns": list(range(20_000))}}, ["body", "filters", "campaigns"]),
        ("POST", "/api/v1/hooks", {"custom_data": {"profile_fields": ["f"] * 5_000}}, ["body", "custom_data"]),
        ("POST", "/api/v1/databases/111/profiles", {"profiles": [{"profile_id": f"p{i}", "fields": {}}
                                                    for i in range(1_001)]}, ["body", "profiles"]),
        ("POST", "/api/v1/hooks/{hook}/failed/replay", {"ids": ["x"] * 10_001}, ["body", "ids"]),
        ("PUT", "/api/v1/databases/111/profiles/p1", {"fields": {f"f{i}": i for i in range(1_001)}},
         ["body", "fields"]),
    ],
    ids=["actions", "filter-ids", "profile-fields", "bulk-profiles", "replay-ids", "fields-of-a-profile"],
)
def test_huge_arrays_are_refused_naming_the_array_and_nothing_is_stored(
    app: FastAPI, client: TestClient, admin: dict[str, str], *, hook_id: int, method: str, path: str,
    body: dict[str, Any], loc: list[str],
) -> None:
    if path == "/api/v1/hooks":
        body = {"name": "huge", "actions": ["click"], "delivery": {"type": "http", "url": "http://x.example/"}, **body}
    before = row_counts(app)
    assert_names(client.request(method, path.format(hook=hook_id), json=body, headers=admin), 422, loc)
    assert row_counts(app) == before


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/api/v1/databases/111/profiles/p1", b'{"fields": {"n": 18446744073709551616}}', ["body", "fields"]),
        ("/api/v1/databases/111/profiles/p1", b'{"fields": {"n": ' + nested(300) + b"}}", ["body", "fields"]),
        ("/api/v1/hooks/{hook}/test", b'{"event": {"n": 18446744073709551616}}', ["body", "event"]),
        ("/api/v1/hooks/{hook}/test", b'{"event": {"x": ' + nested(300) + b"}}", ["body", "event"]),
    ],
    ids=["profile-int-past-64-bits", "profile-nested-300", "test-event-int-past-64-bits", "test-event-nested-300"],
)
def test_values_the_engine_could_not_deliver_are_refused_at_the_door(
    app: FastAPI, client: TestClient, admin: dict[str, str], *, hook_id: int, path: str, body: bytes, loc: list[str]
) -> None:
    # A profile like this used to be stored and then fail the routing of every event of the account
    before = row_counts(app)
    method = "PUT" if "profiles" in path else "POST"
    assert_names(client.request(method, path.format(hook=hook_id), content=body, headers={**admin, **JSON}), 422, loc)
    assert row_counts(app) == before


NAMES = [
    "Ünïcødé ✓", "😀 emoji hook \U0001d54f", "\u202eright-to-left override", "zero\u200bwidth", "e\u0301 combining",
    "日本語のフック",
]


@pytest.mark.parametrize("name", NAMES)
def test_unicode_hook_names_round_trip_exactly(client: TestClient, admin: dict[str, str], name: str) -> None:
    body = {"name": name, "actions": ["click"], "delivery": {"type": "http", "url": "http://x.example/"}}
    created = client.post("/api/v1/hooks", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert client.get(f"/api/v1/hooks/{created.json()['id']}", headers=admin).json()["name"] == name
    clone = client.post(f"/api/v1/hooks/{created.json()['id']}/clone", headers=admin).json()
    assert clone["name"] == f"{name} (copy)"


@pytest.mark.parametrize("name", ["nul\x00byte", "line\nbreak", "tab\there", "bell\x07", "del\x7f"])
def test_control_characters_in_a_hook_name_are_refused_naming_it(
    app: FastAPI, client: TestClient, admin: dict[str, str], name: str
) -> None:
    # NUL used to be a 500 on PostgreSQL (text cannot hold it)
    before = row_counts(app)
    body = {"name": name, "actions": ["click"], "delivery": {"type": "http", "url": "http://x.example/"}}
    assert_names(client.post("/api/v1/hooks", json=body, headers=admin), 422, ["body", "name"])
    assert row_counts(app) == before


def test_a_lone_surrogate_is_refused_in_hook_names_and_in_events(
    app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    before = row_counts(app)
    hook = b'{"name": "\\ud800", "actions": ["click"], "delivery": {"type": "http", "url": "http://x.example/"}}'
    assert_names(client.post("/api/v1/hooks", content=hook, headers={**admin, **JSON}), 422, ["body", "name"])
    surrogate = raw_event(b'"\\udfff"')
    assert_names(client.post("/api/v1/events", content=surrogate, headers={**admin, **JSON}), 422, ["body"])
    assert row_counts(app) == before


def test_a_nul_in_a_catalog_name_is_refused_naming_it(app: FastAPI, client: TestClient, admin: dict[str, str]) -> None:
    before = row_counts(app)
    response = client.put("/api/v1/catalog/campaigns/7", json={"name": "spring\x00sale"}, headers=admin)
    assert_names(response, 422, ["body", "name"])
    assert row_counts(app) == before


@pytest.mark.parametrize(
    "headers",
    [{"X-Name": "привет"}, {"X-Accent": "café"}, {"X-Nul": "a\x00b"}, {"X-Del": "a\x7f"}, {"X-Split": "a\r\nX-Evil: 1"},
     {"X Space": "v"}, {"Host": "evil.example"}, {"X-Ünicode": "v"}],
    ids=["cyrillic-value", "latin1-value", "nul", "del", "crlf-injection", "space-in-name", "host", "unicode-name"],
)
def test_header_names_and_values_that_cannot_go_on_the_wire_are_refused_at_save(
    app: FastAPI, client: TestClient, admin: dict[str, str], headers: dict[str, str]
) -> None:
    # Non-ASCII values used to be saved and then crash every send (a 500 on POST /hooks/{id}/test)
    before = row_counts(app)
    delivery = {"type": "http", "url": "http://x.example/", "headers": headers}
    body = {"name": "h", "actions": ["click"], "delivery": delivery}
    assert_names(client.post("/api/v1/hooks", json=body, headers=admin), 422, ["body", "delivery", "http", "headers"])
    assert row_counts(app) == before


@pytest.mark.parametrize("token", ["tök", "with space", "nul\x00"])
def test_a_bearer_token_that_cannot_be_sent_in_a_header_is_refused_at_save(
    client: TestClient, admin: dict[str, str], token: str
) -> None:
    auth = {"type": "bearer", "token": token}
    body = {"name": "h", "actions": ["click"], "delivery": {"type": "http", "url": "http://x.example/", "auth": auth}}
    response = client.post("/api/v1/hooks", json=body, headers=admin)
    assert_names(response, 422, ["body", "delivery", "http", "auth", "bearer", "token"])
    assert token not in response.text


def test_unicode_in_events_is_kept_exactly_as_captured(app: FastAPI, client: TestClient, admin: dict[str, str]) -> None:
    odd = event(1, profile_id="профиль-😀", custom_data={"note": "e\u0301 \u202e 日本 \u200b"})
    response = client.post("/api/v1/events", json=odd, headers=admin)
    assert response.status_code == 202, response.text
    with app.state.sessions() as session:
        stored = orjson.loads(session.scalars(select(Intake.events)).one())
    assert {k: v for k, v in stored[0].items() if k != "event_id"} == odd


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff\xfe", "Bearer тест".encode(), b"Bearer a\x00b", b"Bearer " + b"a" * 100_000, b"Basic dTpw"],
    ids=["latin1-bytes", "utf8-bytes", "nul", "100-kb-token", "basic-scheme"],
)
def test_an_undecodable_or_absurd_authorization_header_is_401_naming_it_and_stores_nothing(
    app: FastAPI, client: TestClient, authorization: bytes
) -> None:
    before = row_counts(app)
    for method, path in (("GET", "/api/v1/hooks"), ("POST", "/api/v1/events")):
        response = client.request(method, path, content=orjson.dumps([event(1)]),
                                  headers=[(b"authorization", authorization), (b"content-type", b"application/json")])
        assert_names(response, 401, ["header", "Authorization"])
    assert row_counts(app) == before
