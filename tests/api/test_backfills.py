"""POST /hooks/{id}/backfill, GET /backfills/{id}, POST /backfills/{id}/cancel: shapes and every refusal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.api.routes.backfills import MAX_OPEN_PER_HOOK
from actionhooks.settings import Settings
from actionhooks.storage.tables import Backfill


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


NOW = datetime.now(UTC)
LAST_HOUR = {"from": _iso(NOW - timedelta(hours=1)), "to": _iso(NOW)}


@pytest.fixture
def hook_id(client: TestClient, admin: dict[str, str], hook_body: Callable[..., dict[str, Any]]) -> int:
    return int(client.post("/api/v1/hooks", json=hook_body(), headers=admin).json()["id"])


def _jobs(app: FastAPI) -> int:
    with app.state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Backfill)) or 0)


def test_a_backfill_is_accepted_with_its_id_and_state_and_can_be_read_and_cancelled(
    client: TestClient, admin: dict[str, str], hook_id: int
) -> None:
    response = client.post(f"/api/v1/hooks/{hook_id}/backfill", json=LAST_HOUR, headers=admin)
    assert response.status_code == 202
    job = response.json()
    assert (job["state"], job["hook_id"], job["scanned"], job["delivered"]) == ("running", hook_id, 0, 0)
    assert job["from"] == LAST_HOUR["from"]

    read = client.get(f"/api/v1/backfills/{job['id']}", headers=admin).json()
    assert read["id"] == job["id"]
    assert set(read) >= {"state", "scanned", "matched", "delivered", "failed"}

    cancelled = client.post(f"/api/v1/backfills/{job['id']}/cancel", headers=admin)
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")
    assert client.post(f"/api/v1/backfills/{job['id']}/cancel", headers=admin).status_code == 200


def _refused(response: Any, status: int, loc: list[str]) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"] == loc
    return str(detail[0]["msg"])


@pytest.mark.parametrize(
    "case",
    [
        ({"from": _iso(NOW), "to": _iso(NOW - timedelta(hours=1))}, ["body", "from"], "before `to`"),
        ({"from": _iso(NOW), "to": _iso(NOW)}, ["body", "from"], "before `to`"),
        ({"from": _iso(NOW - timedelta(hours=169)), "to": _iso(NOW)}, ["body", "from"], "older than the archive"),
        ({"from": _iso(NOW - timedelta(hours=1)), "to": _iso(NOW + timedelta(days=1))}, ["body", "to"], "future"),
        ({"from": _iso(NOW + timedelta(hours=1)), "to": _iso(NOW + timedelta(hours=2))}, ["body", "from"],
         "future"),
        ({"from": "2026-01-01T00:00:00", "to": _iso(NOW)}, ["body", "from"], "timezone"),
        ({"from": "yesterday", "to": _iso(NOW)}, ["body", "from"], "datetime"),
        ({"to": _iso(NOW)}, ["body", "from"], "required"),
        ({**LAST_HOUR, "hook": 2}, ["body", "hook"], "not permitted"),
    ],
)
def test_a_bad_interval_is_refused_naming_the_field_and_nothing_is_stored(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_id: int, case: tuple[dict[str, Any], list[str], str]
) -> None:
    body, loc, says = case
    msg = _refused(client.post(f"/api/v1/hooks/{hook_id}/backfill", json=body, headers=admin), 422, loc)
    assert says in msg
    assert _jobs(app) == 0


def test_a_stopped_hook_is_refused_409_and_a_foreign_or_missing_one_404(
    app: FastAPI, client: TestClient, admin: dict[str, str], other_admin: dict[str, str], hook_id: int
) -> None:
    assert _refused(client.post(f"/api/v1/hooks/{hook_id}/backfill", json=LAST_HOUR, headers=other_admin), 404,
                    ["path", "id"])
    assert _refused(client.post("/api/v1/hooks/999/backfill", json=LAST_HOUR, headers=admin), 404, ["path", "id"])
    client.post(f"/api/v1/hooks/{hook_id}/stop", headers=admin).raise_for_status()
    msg = _refused(client.post(f"/api/v1/hooks/{hook_id}/backfill", json=LAST_HOUR, headers=admin), 409,
                   ["path", "id"])
    assert "stopped" in msg
    assert _jobs(app) == 0


def test_another_accounts_backfill_cannot_be_read_or_cancelled(
    client: TestClient, admin: dict[str, str], other_admin: dict[str, str], ingest: dict[str, str], hook_id: int
) -> None:
    job_id = client.post(f"/api/v1/hooks/{hook_id}/backfill", json=LAST_HOUR, headers=admin).json()["id"]
    _refused(client.get(f"/api/v1/backfills/{job_id}", headers=other_admin), 404, ["path", "id"])
    _refused(client.post(f"/api/v1/backfills/{job_id}/cancel", headers=other_admin), 404, ["path", "id"])
    assert client.get(f"/api/v1/backfills/{job_id}", headers=ingest).status_code == 403
    assert client.post(f"/api/v1/hooks/{hook_id}/backfill", json=LAST_HOUR, headers=ingest).status_code == 403
    assert client.get(f"/api/v1/backfills/{job_id}", headers=admin).json()["state"] == "running"


def test_a_hook_cannot_queue_backfills_without_bound(
    app: FastAPI, client: TestClient, admin: dict[str, str], hook_id: int
) -> None:
    for _ in range(MAX_OPEN_PER_HOOK):
        assert client.post(f"/api/v1/hooks/{hook_id}/backfill", json=LAST_HOUR, headers=admin).status_code == 202
    _refused(client.post(f"/api/v1/hooks/{hook_id}/backfill", json=LAST_HOUR, headers=admin), 429, ["path", "id"])
    assert _jobs(app) == MAX_OPEN_PER_HOOK


def test_with_the_archive_off_a_backfill_is_refused(tmp_path: Any, hook_body: Callable[..., dict[str, Any]]) -> None:
    from actionhooks.api.app import create_app
    from actionhooks.storage.tokens import create_token

    app = create_app(
        Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'off.db'}", DATA_DIR=str(tmp_path), EVENT_ARCHIVE_HOURS=0)
    )
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {create_token(app.state.sessions, 1, 'admin')}"}
        hook = client.post("/api/v1/hooks", json=hook_body(), headers=headers).json()["id"]
        msg = _refused(client.post(f"/api/v1/hooks/{hook}/backfill", json=LAST_HOUR, headers=headers), 422,
                       ["body", "from"])
    assert "archive is off" in msg
