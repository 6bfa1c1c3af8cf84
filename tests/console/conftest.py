"""What the console's HTTP tests share: an app on a fresh SQLite database, a logged-in browser-like
client of account 1 (`console`), a REST client of the same account (`api`) and the page's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actionhooks.api.app import create_app
from actionhooks.settings import Settings
from actionhooks.storage.tokens import create_token

ORIGIN = "http://testserver"
# Forged POSTs: (form fields, headers); "CSRF" stands for the session's real token, sent from another site.
FORGERIES = [
    ({"confirmed": "yes"}, {}),  # no token at all
    ({"confirmed": "yes", "csrf": "0" * 64}, {}),  # a guessed one
    ({"confirmed": "yes", "csrf": "CSRF"}, {"Origin": "https://evil.example"}),  # right token, other site
    ({"confirmed": "yes", "csrf": "CSRF"}, {"Sec-Fetch-Site": "cross-site"}),
]


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'console.db'}", DATA_DIR=str(tmp_path)))


def _token(app: FastAPI, account_id: int = 1, scope: str = "admin") -> str:
    return create_token(app.state.sessions, account_id, scope)  # type: ignore[arg-type]


@pytest.fixture
def console(app: FastAPI) -> Iterator[TestClient]:
    """A browser-like client of account 1, logged in."""
    with TestClient(app, base_url=ORIGIN) as client:
        answer = client.post("/console/login", data={"token": _token(app)}, headers={"Origin": ORIGIN})
        assert answer.status_code == 200  # followed the redirect to the list
        yield client


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {_token(app)}"}) as client:
        yield client


def csrf_of(client: TestClient, path: str = "/console/hooks") -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(path).text)
    assert match
    return match.group(1)
