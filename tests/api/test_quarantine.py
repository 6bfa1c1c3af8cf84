"""/quarantine: listing and replay are for admin tokens; bad ids are refused (routing them: tests/worker)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("ids", [[0], [2**63], [1] * 10_001])
def test_a_quarantine_replay_with_bad_ids_is_422_naming_them(
    client: TestClient, admin: dict[str, str], ids: list[Any]
) -> None:
    response = client.post("/api/v1/quarantine/replay", json={"ids": ids}, headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "ids"]


def test_the_quarantine_is_for_admin_tokens_and_starts_empty(
    client: TestClient, admin: dict[str, str], ingest: dict[str, str]
) -> None:
    assert client.get("/api/v1/quarantine", headers=admin).json() == []
    assert client.get("/api/v1/quarantine", headers=ingest).status_code == 403
    assert client.post("/api/v1/quarantine/replay", json={}, headers=admin).json() == {"replayed": 0}
