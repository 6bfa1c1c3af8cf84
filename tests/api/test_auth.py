"""Bearer tokens: 401 without a valid one, 403 for ingest tokens on admin calls, only hashes stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from actionhooks.api.auth import AnyPrincipal, Principal
from actionhooks.storage.tables import ApiToken
from actionhooks.storage.tokens import create_token, hash_token

ADMIN_CALLS = [
    ("POST", "/api/v1/hooks"),
    ("GET", "/api/v1/hooks"),
    ("GET", "/api/v1/hooks/1"),
    ("PUT", "/api/v1/hooks/1"),
    ("PATCH", "/api/v1/hooks/1"),
    ("DELETE", "/api/v1/hooks/1"),
    ("POST", "/api/v1/hooks/1/activate"),
    ("POST", "/api/v1/hooks/1/stop"),
    ("POST", "/api/v1/hooks/1/clone"),
    ("PUT", "/api/v1/catalog/campaigns/1"),
    ("GET", "/api/v1/catalog/campaigns"),
    ("GET", "/api/v1/catalog/campaigns/1"),
    ("DELETE", "/api/v1/catalog/campaigns/1"),
    ("PUT", "/api/v1/databases/1/profiles/p"),
    ("POST", "/api/v1/databases/1/profiles"),
    ("GET", "/api/v1/databases/1/profiles/p"),
    ("DELETE", "/api/v1/databases/1/profiles/p"),
]


def detail(response: Any) -> dict[str, Any]:
    [error] = response.json()["detail"]
    return error


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
def test_every_admin_call_needs_a_valid_token_and_refuses_an_ingest_token(
    client: TestClient, ingest: dict[str, str], method: str, path: str
) -> None:
    missing = client.request(method, path)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert detail(missing)["loc"] == ["header", "Authorization"]
    wrong = client.request(method, path, headers={"Authorization": "Bearer ah_not-a-token"})
    assert wrong.status_code == 401
    assert "invalid_token" in wrong.headers["WWW-Authenticate"]
    basic = client.request(method, path, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401
    forbidden = client.request(method, path, headers=ingest)
    assert forbidden.status_code == 403
    assert "admin" in detail(forbidden)["msg"]


def test_any_principal_accepts_ingest_and_admin_tokens_with_their_account(
    app: FastAPI, client: TestClient, ingest: dict[str, str], other_admin: dict[str, str]
) -> None:
    @app.get("/probe")
    def probe(principal: AnyPrincipal) -> dict[str, Any]:
        return {"account_id": principal.account_id, "scope": principal.scope}

    assert client.get("/probe", headers=ingest).json() == {"account_id": 1, "scope": "ingest"}
    assert client.get("/probe", headers=other_admin).json() == {"account_id": 2, "scope": "admin"}
    assert client.get("/probe").status_code == 401


def test_only_the_hash_of_a_token_is_stored(app: FastAPI) -> None:
    token = create_token(app.state.sessions, 9, "ingest", "platform")
    assert token.startswith("ah_")
    assert len(token) >= 3 + 43  # 256 random bits, url-safe base64
    with app.state.sessions() as session:
        rows = session.execute(select(ApiToken.token_hash, ApiToken.name, ApiToken.scope)).all()
    assert [tuple(row) for row in rows] == [(hash_token(token), "platform", "ingest")]
    assert token not in str(rows)


def test_a_token_is_served_from_the_cache_for_a_few_seconds(app: FastAPI) -> None:
    # Given a token that was used once
    token = create_token(app.state.sessions, 4, "admin")
    assert app.state.tokens.principal(token) == Principal(4, "admin")
    # When its row disappears, Then the cached principal still answers (no database round trip)
    with app.state.sessions.begin() as session:
        session.execute(delete(ApiToken))
    assert app.state.tokens.principal(token) == Principal(4, "admin")
    assert app.state.tokens.principal("ah_other") is None


def test_create_token_rejects_an_unknown_scope_or_a_non_positive_account(app: FastAPI) -> None:
    with pytest.raises(ValueError, match="scope"):
        create_token(app.state.sessions, 1, "root")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="account_id"):
        create_token(app.state.sessions, 0, "admin")
