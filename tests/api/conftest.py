"""API fixtures: an app on a fresh SQLite database, driven in-process, with tokens of two accounts."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # starlette asks for the httpx2 package; httpx (installed) works, and pytest turns warnings into errors.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from actionhooks.api.app import create_app
from actionhooks.hooks.models import EXAMPLE_HOOK
from actionhooks.settings import Settings
from actionhooks.storage.tokens import create_token


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", DATA_DIR=str(tmp_path)))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _bearer(app: FastAPI, account_id: int, scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(app.state.sessions, account_id, scope)}"}  # type: ignore[arg-type]


@pytest.fixture
def admin(app: FastAPI) -> dict[str, str]:
    """Headers of an admin token of account 1."""
    return _bearer(app, 1, "admin")


@pytest.fixture
def other_admin(app: FastAPI) -> dict[str, str]:
    """Headers of an admin token of account 2."""
    return _bearer(app, 2, "admin")


@pytest.fixture
def ingest(app: FastAPI) -> dict[str, str]:
    """Headers of an ingest token of account 1."""
    return _bearer(app, 1, "ingest")


@pytest.fixture
def hook_body() -> Callable[..., dict[str, Any]]:
    """A valid hook body (the OpenAPI example), with top-level fields replaced by keyword."""

    def make(**changes: Any) -> dict[str, Any]:
        return {**copy.deepcopy(EXAMPLE_HOOK), **changes}

    return make
