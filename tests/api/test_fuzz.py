"""Property-based fuzzing of every operation of /openapi.json (schemathesis), in process on SQLite.

Schema-valid and schema-violating requests, with an admin token, an ingest token and the garbage or
missing tokens schemathesis generates itself: no request may crash the API (5xx), every 4xx must be
the one error shape naming what was wrong, and a rejected request must leave the database unchanged.
Example counts are small so the whole module stays well under a minute on a loaded 2-core runner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from sqlalchemy import func, select

from actionhooks.api.app import create_app
from actionhooks.settings import Settings
from actionhooks.storage.tables import Base, Hook
from actionhooks.storage.tokens import create_token
from tests.support.engine import postgres_database

# POST /hooks/{id}/test really sends: it is fuzzed only against a hook whose target the SSRF guard refuses.
TEST_SEND = "POST /api/v1/hooks/{id}/test"
# Errors not about one input: an unknown route or method (a generated path parameter may contain "/").
ROUTE_ERRORS = {"Not Found", "Method Not Allowed"}
EXAMPLES = {"admin": 15, "ingest": 5, "generated": 8, "admin on postgresql": 8}


def _fuzzed(url: str, folder: Path) -> Iterator[tuple[FastAPI, schemathesis.BaseSchema]]:
    app = create_app(Settings(DATABASE_URL=url, DATA_DIR=str(folder), BROKER_URL="memory://"))
    yield app, schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.engine.dispose()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, schemathesis.BaseSchema]]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    yield from _fuzzed(f"sqlite:///{folder / 'api.db'}", folder)


@pytest.fixture
def fuzzed_postgresql(tmp_path: Path) -> Iterator[tuple[FastAPI, schemathesis.BaseSchema]]:
    """PostgreSQL refuses what SQLite stores (NUL in text): storage-specific crashes show only here."""
    with postgres_database("actionhooks_fuzz") as url:
        yield from _fuzzed(url, tmp_path)


def fingerprint(app: FastAPI) -> tuple[int, ...]:
    """Row counts of every table and the sum of hook versions, in one query: what any stored change moves."""
    counts = [select(func.count()).select_from(t).scalar_subquery() for t in Base.metadata.sorted_tables]
    versions = select(func.coalesce(func.sum(Hook.version), 0)).scalar_subquery()
    with app.state.engine.connect() as conn:
        return tuple(conn.execute(select(*counts, versions)).one())


def check_response(case: Case, status: int, body: Any) -> None:
    where = f"{case.method} {case.formatted_path}"
    assert status < 500, f"{where} crashed with {status}: {body}"
    if status < 400:
        return
    assert isinstance(body, dict), f"{where}: {body}"
    assert isinstance(body.get("detail"), list), f"{where}: {body}"
    assert body["detail"], f"{where}: {body}"
    for item in body["detail"]:
        assert isinstance(item.get("loc"), list), f"{where}: {item}"
        assert isinstance(item.get("msg"), str), f"{where}: {item}"
        assert item["msg"], f"{where}: {item}"
        assert item["loc"] or item["msg"] in ROUTE_ERRORS, f"{where} {status} names no field: {item}"


def fuzz(
    case_strategy: Any,
    call: Callable[[Case], tuple[int, Any]],
    examples: int,
    check: Callable[[Case, int, Any], None],
) -> None:
    @given(case_strategy)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: Case) -> None:
        status, body = call(case)
        check_response(case, status, body)
        check(case, status, body)

    with suppress(Unsatisfiable):  # an operation with nothing to make invalid (GET /healthz in negative mode)
        run()


def caller(app: FastAPI, authorization: str | None) -> Callable[[Case], tuple[int, Any]]:
    """Send a case with `authorization` instead of its generated header (None keeps the generated one)."""

    def call(case: Case) -> tuple[int, Any]:
        if authorization is not None:
            headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
            case.headers = {**headers, "Authorization": authorization}
        response = case.call()
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    return call


@pytest.mark.parametrize("who", ["admin", "ingest", "generated"])
def test_no_generated_request_crashes_the_api_and_every_rejection_names_its_field_and_stores_nothing(
    fuzzed: tuple[FastAPI, schemathesis.BaseSchema], who: str
) -> None:
    fuzz_every_operation(fuzzed, who, EXAMPLES[who])


def test_no_generated_admin_request_crashes_the_api_on_postgresql_either(
    fuzzed_postgresql: tuple[FastAPI, schemathesis.BaseSchema],
) -> None:
    fuzz_every_operation(fuzzed_postgresql, "admin", EXAMPLES["admin on postgresql"])


def fuzz_every_operation(fuzzed: tuple[FastAPI, schemathesis.BaseSchema], who: str, examples: int) -> None:
    app, schema = fuzzed
    authorization = None if who == "generated" else f"Bearer {create_token(app.state.sessions, 1, who)}"
    call = caller(app, authorization)
    operations = [result.ok() for result in schema.get_all_operations()]
    last = {"rows": fingerprint(app)}  # the database as the previous request left it
    for operation in operations:
        if operation.label == TEST_SEND:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            def stored_nothing_when_rejected(case: Case, status: int, _body: Any) -> None:
                rows, last["rows"] = last["rows"], fingerprint(app)
                if status >= 400:
                    assert last["rows"] == rows, f"rejected {case.method} {case.formatted_path} stored data"
                if who == "generated" and case.path.startswith("/api/v1"):
                    assert status >= 400, f"{case.method} {case.formatted_path} accepted a generated token"
                if who == "ingest" and case.path.startswith("/api/v1") and case.path != "/api/v1/events":
                    assert status >= 400, f"an ingest token reached {case.method} {case.formatted_path}"

            fuzz(operation.as_strategy(generation_mode=mode), call, examples, stored_nothing_when_rejected)


def test_fuzzed_test_sends_never_crash_and_never_pass_the_ssrf_guard(
    fuzzed: tuple[FastAPI, schemathesis.BaseSchema],
) -> None:
    app, schema = fuzzed
    authorization = f"Bearer {create_token(app.state.sessions, 1, 'admin')}"
    with TestClient(app) as client:
        hook = {"name": "guarded", "actions": ["open"], "delivery": {"type": "http", "url": "http://127.0.0.1:9/"}}
        created = client.post("/api/v1/hooks", json=hook, headers={"Authorization": authorization})
        assert created.status_code == 201, created.text
    hook_id = created.json()["id"]
    operation = next(r.ok() for r in schema.get_all_operations() if r.ok().label == TEST_SEND)
    call = caller(app, authorization)

    def refused(_case: Case, status: int, result: Any) -> None:
        if status == 200:
            assert result["ok"] is False, result
            assert "TargetForbidden" in result["error"], result

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(generation_mode=mode, path_parameters={"id": hook_id})
        fuzz(strategy, call, 15, refused)
