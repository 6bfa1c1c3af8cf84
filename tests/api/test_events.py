"""POST /events: whole-request validation, tenancy, limits, dedup, and what is stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.storage.tables import Intake, RouteSignal
from tests.support.engine import event


def _event(n: int = 0, **fields: Any) -> dict[str, Any]:
    return event(n, account_id=1, **fields)


def _stored(app: FastAPI) -> list[dict[str, Any]]:
    with app.state.sessions() as session:
        return [e for blob in session.scalars(select(Intake.events)) for e in orjson.loads(blob)]


def test_accepted_events_are_stored_as_captured_with_ids_and_a_route_signal(
    client: TestClient, app: FastAPI, ingest: dict[str, str]
) -> None:
    sent = [_event(1), _event(2, event_id="platform-2")]
    response = client.post("/api/v1/events", json=sent, headers=ingest)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert body["queued"] == 2
    assert body["ids"][1] == "platform-2"
    stored = _stored(app)
    assert stored[0] == {**sent[0], "event_id": body["ids"][0]}
    assert stored[1] == sent[1]
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RouteSignal)) == 1


def test_one_object_is_accepted_as_a_request_of_one_event(client: TestClient, ingest: dict[str, str]) -> None:
    response = client.post("/api/v1/events", json=_event(1), headers=ingest)
    assert response.status_code == 202
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"event_type": "teleport"}, [1, "event_type"]),
        ({"event_date": "yesterday"}, [1, "event_date"]),
        ({"is_test": "no"}, [1, "is_test"]),
        ({"event_data": None}, [1, "event_data"]),
        ({"profile_id": "p" * 201}, [1, "profile_id"]),
        ({"profile_id": "p\x00"}, [1, "profile_id"]),
        ({"event_data": {"send_message_id": "s" * 201}}, [1, "event_data", "send_message_id"]),
        ({"event_data": {"send_message_id": "s\x00"}}, [1, "event_data", "send_message_id"]),
    ],
)
def test_one_bad_event_rejects_the_whole_request_naming_index_and_field(
    client: TestClient, app: FastAPI, admin: dict[str, str], change: dict[str, Any], loc: list[Any]
) -> None:
    response = client.post("/api/v1/events", json=[_event(0), {**_event(1), **change}], headers=admin)
    assert response.status_code == 422
    assert any(item["loc"][: len(loc)] == loc for item in response.json()["detail"]), response.json()
    assert _stored(app) == []


def test_a_missing_required_field_is_named(client: TestClient, admin: dict[str, str]) -> None:
    bad = _event(0)
    del bad["account_id"]
    response = client.post("/api/v1/events", json=[bad], headers=admin)
    assert response.status_code == 422
    assert [0, "account_id"] in [item["loc"][:2] for item in response.json()["detail"]]


def test_events_of_another_account_are_refused(client: TestClient, app: FastAPI, admin: dict[str, str]) -> None:
    response = client.post("/api/v1/events", json=[_event(0), event(1, account_id=2)], headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == [1, "account_id"]
    assert _stored(app) == []


def test_a_request_without_a_valid_token_is_401(client: TestClient, app: FastAPI) -> None:
    assert client.post("/api/v1/events", json=[_event(0)]).status_code == 401
    wrong = {"Authorization": "Bearer ah_not-a-token"}
    assert client.post("/api/v1/events", json=[_event(0)], headers=wrong).status_code == 401
    assert _stored(app) == []


def test_oversized_and_non_json_requests_are_refused_clearly(
    tmp_path: Any, ingest: dict[str, str], client: TestClient, app: FastAPI
) -> None:
    limit = app.state.settings.EVENTS_MAX_REQUEST_BYTES
    big = b"[" + b",".join([orjson.dumps(_event(i)) for i in range(limit // 250 + 1)]) + b"]"
    response = client.post("/api/v1/events", content=big, headers={**ingest, "Content-Type": "application/json"})
    assert response.status_code == 413
    text = client.post("/api/v1/events", content=b"hello", headers={**ingest, "Content-Type": "text/plain"})
    assert text.status_code == 415
    broken = client.post("/api/v1/events", content=b"[{", headers={**ingest, "Content-Type": "application/json"})
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["loc"] == ["body"]
    assert _stored(app) == []


def test_an_event_id_repeated_within_the_window_is_not_queued_again(
    client: TestClient, app: FastAPI, ingest: dict[str, str]
) -> None:
    first = client.post("/api/v1/events", json=[_event(1, event_id="e1")], headers=ingest).json()
    again = client.post(
        "/api/v1/events",
        json=[_event(1, event_id="e1"), _event(2, event_id="e2"), _event(2, event_id="e2")],
        headers=ingest,
    ).json()
    assert first["queued"] == 1
    assert again["duplicates"] == ["e1", "e2"]
    assert again["queued"] == 1
    assert [e["event_id"] for e in _stored(app)] == ["e1", "e2"]


def test_an_unknown_top_level_field_is_accepted_and_stored_as_sent(
    client: TestClient, app: FastAPI, ingest: dict[str, str]
) -> None:
    sent = _event(1, field_added_by_a_newer_platform={"version": 99, "tags": ["a"]})
    response = client.post("/api/v1/events", json=[sent], headers=ingest)
    assert response.status_code == 202
    assert _stored(app) == [{**sent, "event_id": response.json()["ids"][0]}]


def test_rejections_are_counted_in_metrics_by_reason(client: TestClient, app: FastAPI, ingest: dict[str, str]) -> None:
    client.post("/api/v1/events", json=[_event(1, profile_id="p\x00")], headers=ingest)
    client.post("/api/v1/events", json=[_event(1, profile_id="p" * 500)], headers=ingest)
    big = orjson.dumps([_event(1, newer={"n": 1})]).replace(b'"n":1', b'"n":99999999999999999999')
    response = client.post("/api/v1/events", content=big, headers={**ingest, "content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == [0, "newer", "n"]
    text = client.get("/metrics").text
    for reason in ("nul_character", "too_long", "integer_range"):
        assert f'actionhooks_events_rejected_requests_total{{reason="{reason}"}} 1.0' in text
    assert _stored(app) == []

