"""Issue 15, point 3: success_regex cannot be a ReDoS, and /test never blocks the API's event loop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actionhooks.api.app import create_app
from actionhooks.settings import Settings
from tests.support.receiver import Receiver, Reply


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    """Private targets allowed: the receiver is on loopback."""
    application = create_app(Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
        HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_HTTP_TIMEOUT_SEC=60,
    ))
    yield application
    application.state.engine.dispose()


def hook(url: str, regex: str) -> dict[str, Any]:
    return {"name": "regex", "actions": ["click"],
            "delivery": {"type": "http", "url": url, "success_regex": regex}}


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=ok)ok", r"(?<!x)ok", r"(?P<n>a)(?P=n)"])
def test_a_pattern_a_linear_engine_cannot_run_is_refused_at_save(
    client: TestClient, owner: dict[str, str], pattern: str
) -> None:
    response = client.post("/api/v1/hooks", json=hook("http://127.0.0.1:9/", pattern), headers=owner)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "delivery", "http", "success_regex"]
    assert "RE2" in detail["msg"]


@pytest.mark.timeout(120)
def test_the_catastrophic_pattern_of_the_issue_is_matched_in_linear_time(
    client: TestClient, owner: dict[str, str], receiver: Receiver
) -> None:
    # ^(a+)+$ against "a"x27 + "!" took 4.3 s with Python's re and doubled per character; here 60,000.
    receiver.default = Reply(body=b"a" * 60_000 + b"!")
    hook_id = client.post("/api/v1/hooks", json=hook(receiver.url, r"^(a+)+$"), headers=owner).json()["id"]
    result = client.post(f"/api/v1/hooks/{hook_id}/test", headers=owner).json()
    assert result["ok"] is False
    assert "does not match success_regex" in result["error"]
    receiver.default = Reply(body=b"a" * 60_000)
    assert client.post(f"/api/v1/hooks/{hook_id}/test", headers=owner).json()["ok"] is True


class HeldReceiver:
    """Accepts one request and answers it only when `release()` is called."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"
        self.arrived = threading.Event()
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            conn.recv(65536)
            self.arrived.set()
            self._released.wait(60)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def release(self) -> None:
        self._released.set()
        self._thread.join(10)
        self._server.close()


def test_a_slow_receiver_during_test_does_not_hold_up_other_requests(
    client: TestClient, owner: dict[str, str]
) -> None:
    held = HeldReceiver()
    results: list[Any] = []
    try:
        hook_id = client.post("/api/v1/hooks", json=hook(held.url, "ok"), headers=owner).json()["id"]
        sending = threading.Thread(
            target=lambda: results.append(client.post(f"/api/v1/hooks/{hook_id}/test", headers=owner))
        )
        sending.start()
        assert held.arrived.wait(30)  # /test is now waiting for the receiver's answer
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/hooks", headers=owner).status_code == 200
        assert sending.is_alive()  # both answered while /test was still waiting
    finally:
        held.release()
    sending.join(30)
    assert results[0].json()["ok"] is True
