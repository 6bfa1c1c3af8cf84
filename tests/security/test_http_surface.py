"""Issue 15, points 7 and 8: offline /docs, security headers, the /metrics token, token management, config check."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actionhooks.api.app import create_app
from actionhooks.api.auth import TOKEN_CACHE_SEC
from actionhooks.settings import Settings
from actionhooks.storage.tokens import create_token
from tests.support.engine import poll


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
                    **overrides)


def test_docs_load_only_local_assets_under_a_csp_that_pins_the_inline_script(
    client: TestClient, connects: list[object]
) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    assert all(s.startswith("/docs/assets/") for s in sources), sources  # no CDN: works offline
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert asset.content  # served from the installed swagger-ui-bundle package
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    for script in re.findall(r"<script>(.*?)</script>", html, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert connects == []


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/api/v1/hooks", "/no/such/page"])
def test_every_answer_carries_nosniff(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_metrics_are_open_by_default(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200


def test_metrics_need_the_metrics_token_when_one_is_set(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, METRICS_TOKEN="m-token-123"))
    try:
        with TestClient(app) as client:
            assert client.get("/metrics").status_code == 401
            assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
            account = create_token(app.state.sessions, 23, "admin")  # an account's token is not enough
            assert client.get("/metrics", headers={"Authorization": f"Bearer {account}"}).status_code == 401
            allowed = client.get("/metrics", headers={"Authorization": "Bearer m-token-123"})
            assert allowed.status_code == 200
            assert "actionhooks_" in allowed.text
    finally:
        app.state.engine.dispose()


def test_an_admin_lists_and_revokes_the_accounts_tokens_and_only_those(
    app: FastAPI, client: TestClient, owner: dict[str, str], intruder: dict[str, str]
) -> None:
    ingest = create_token(app.state.sessions, 23, "ingest", "platform")
    listed = client.get("/api/v1/tokens", headers=owner)
    assert listed.status_code == 200
    tokens = listed.json()
    assert [t["scope"] for t in tokens] == ["admin", "ingest"]
    assert ingest not in listed.text
    assert "hash" not in listed.text
    ingest_id = next(t["id"] for t in tokens if t["name"] == "platform")
    # another account can neither see nor revoke it
    assert all(t["id"] != ingest_id for t in client.get("/api/v1/tokens", headers=intruder).json())
    assert client.delete(f"/api/v1/tokens/{ingest_id}", headers=intruder).status_code == 404
    ingest_headers = {"Authorization": f"Bearer {ingest}"}
    event = {"events": []}
    assert client.post("/api/v1/events", json=event, headers=ingest_headers).status_code != 401
    # revoked through the API: refused at once by this process
    assert client.delete(f"/api/v1/tokens/{ingest_id}", headers=owner).status_code == 204
    assert client.post("/api/v1/events", json=event, headers=ingest_headers).status_code == 401
    assert client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {ingest}"}).status_code == 401


def test_a_token_revoked_elsewhere_stops_working_within_the_cache_lifetime(tmp_path: Path) -> None:
    first, second = create_app(settings(tmp_path)), create_app(settings(tmp_path))  # two API processes' worth
    try:
        token = create_token(first.state.sessions, 23, "admin")
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(first) as a, TestClient(second) as b:
            assert b.get("/api/v1/hooks", headers=headers).status_code == 200  # cached by the second API
            token_id = a.get("/api/v1/tokens", headers=headers).json()[0]["id"]
            assert a.delete(f"/api/v1/tokens/{token_id}", headers=headers).status_code == 204
            assert a.get("/api/v1/hooks", headers=headers).status_code == 401
            poll(lambda: b.get("/api/v1/hooks", headers=headers).status_code == 401 or None,
                 "the other API to forget the revoked token", timeout=TOKEN_CACHE_SEC + 10)
    finally:
        first.state.engine.dispose()
        second.state.engine.dispose()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actionhooks", *args], capture_output=True, text=True, check=False,
                          cwd=tmp_path, timeout=60)


def test_token_list_and_revoke_on_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "main.json"
    config.write_text(json.dumps({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "DATA_DIR": str(tmp_path)}))
    token = _cli(tmp_path, "--config", str(config), "token", "create", "--account", "23", "--name", "ops")
    secret = token.stdout.strip().splitlines()[-1]
    _cli(tmp_path, "--config", str(config), "token", "create", "--account", "24")
    listed = _cli(tmp_path, "token", "list", "--account", "23", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()[1:]]
    assert [(r[1], r[2], r[4]) for r in rows] == [("23", "admin", "ops")]
    assert secret not in listed.stdout
    revoked = _cli(tmp_path, "token", "revoke", rows[0][0], "--config", str(config))
    assert revoked.returncode == 0, revoked.stderr
    assert f"within {TOKEN_CACHE_SEC:g} s" in revoked.stdout
    assert _cli(tmp_path, "token", "list", "--account", "23", "--config", str(config)).stdout.count("\n") == 1
    again = _cli(tmp_path, "token", "revoke", rows[0][0], "--config", str(config))
    assert again.returncode == 1
    assert "no token" in again.stderr


def test_config_check_accepts_config_after_the_subcommand_and_hides_secrets(tmp_path: Path) -> None:
    config = tmp_path / "prod.json"
    config.write_text(json.dumps({"DATA_DIR": str(tmp_path), "METRICS_TOKEN": "m-secret-1",
                                  "DATABASE_URL": "postgresql://app:db-secret-2@db:5432/ah"}))
    result = _cli(tmp_path, "config", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "m-secret-1" not in result.stdout
    assert "db-secret-2" not in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"API_PORT": "eighty"}')
    failed = _cli(tmp_path, "config", "check", "--config", str(bad))
    assert failed.returncode == 1
    assert "API_PORT" in failed.stderr


def test_a_page_that_sets_its_own_security_headers_keeps_them() -> None:
    from fastapi.responses import HTMLResponse
    from starlette.applications import Starlette
    from starlette.routing import Route

    from actionhooks.api.security import SecurityHeaders

    own = {"Content-Security-Policy": "default-src 'none'", "Referrer-Policy": "same-origin"}
    page = Starlette(routes=[Route("/page", lambda _request: HTMLResponse("<p>hi</p>", headers=own))])
    page.add_middleware(SecurityHeaders)
    with TestClient(page) as client:
        response = client.get("/page")
    assert response.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert response.headers.get_list("referrer-policy") == ["same-origin"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
