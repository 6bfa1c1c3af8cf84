"""The application as a whole: OpenAPI with examples, bounded bodies, one error shape (health: test_health.py)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.api.app import CONFIG_MAX_BODY_BYTES
from actionhooks.storage.tables import Hook

CONFIG_BODIES = [
    ("post", "/api/v1/hooks"),
    ("put", "/api/v1/hooks/{id}"),
    ("patch", "/api/v1/hooks/{id}"),
    ("put", "/api/v1/catalog/{kind}/{id}"),
    ("put", "/api/v1/databases/{list_id}/profiles/{profile_id}"),
    ("post", "/api/v1/databases/{list_id}/profiles"),
]


def test_openapi_and_docs_are_served_and_every_configuration_body_has_an_example(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for method, path in CONFIG_BODIES:
        content = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
        ref = content["schema"].get("$ref", "").rsplit("/", 1)[-1]
        assert "examples" in content or "examples" in schemas.get(ref, {}), f"{method.upper()} {path}"


def test_a_body_over_the_limit_is_413_by_content_length_and_nothing_is_stored(
    app: FastAPI, client: TestClient, admin: dict[str, str]
) -> None:
    body = b'{"name": "' + b"x" * CONFIG_MAX_BODY_BYTES + b'"}'
    response = client.post("/api/v1/hooks", content=body, headers={**admin, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"][0]["loc"] == ["body"]
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Hook)) == 0


def test_a_chunked_body_over_the_limit_is_413_too(client: TestClient, admin: dict[str, str]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(CONFIG_MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    headers = {**admin, "Content-Type": "application/json"}
    response = client.post("/api/v1/hooks", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"][0]["msg"]


def test_unknown_routes_and_methods_answer_in_the_same_error_shape(client: TestClient, admin: dict[str, str]) -> None:
    missing = client.get("/api/v1/nothing", headers=admin)
    assert missing.status_code == 404
    assert missing.json() == {"detail": [{"loc": [], "msg": "Not Found", "type": "http_error"}]}
    wrong = client.delete("/api/v1/hooks", headers=admin)
    assert wrong.status_code == 405
    assert wrong.json()["detail"][0]["msg"] == "Method Not Allowed"


def test_validation_errors_never_echo_the_rejected_input(client: TestClient, admin: dict[str, str]) -> None:
    body = {"name": "x", "actions": ["open"], "delivery": {"type": "http", "url": "https://x.example",
            "auth": {"type": "basic", "username": "u", "password": "p" * 501}}}
    response = client.post("/api/v1/hooks", json=body, headers=admin)
    assert response.status_code == 422
    assert "ppppp" not in response.text
    assert set(response.json()["detail"][0]) == {"loc", "msg", "type"}
