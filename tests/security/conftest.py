"""Security fixtures: an in-process API with the SSRF guard on, tokens of two accounts, and a socket tripwire."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actionhooks.api.app import create_app
from actionhooks.settings import Settings
from actionhooks.storage.tokens import create_token


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    """The API with HOOK_ALLOW_PRIVATE_TARGETS false (the default) and a broker that never leaves the process."""
    application = create_app(
        Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://")
    )
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def owner(app: FastAPI) -> dict[str, str]:
    """Admin headers of account 23, which owns the data."""
    return {"Authorization": f"Bearer {create_token(app.state.sessions, 23, 'admin')}"}


@pytest.fixture
def intruder(app: FastAPI) -> dict[str, str]:
    """Admin headers of account 24, which must see none of account 23's data."""
    return {"Authorization": f"Bearer {create_token(app.state.sessions, 24, 'admin')}"}


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outgoing connect attempted in this process, refused: a guard that regressed sends nothing anywhere."""
    attempts: list[Any] = []

    def refuse(address: Any, *_args: Any, **_kwargs: Any) -> socket.socket:
        attempts.append(address)
        raise ConnectionRefusedError(f"test tripwire: no connect to {address!r}")

    def refuse_method(_sock: socket.socket, address: Any) -> None:
        refuse(address)

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse_method)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_method)
    return attempts
