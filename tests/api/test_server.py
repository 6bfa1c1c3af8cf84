"""The API as served by uvicorn, driven over raw sockets: what slow, many or failing clients get.

- A half-sent request (part of the headers, or of the body) is closed after API_REQUEST_TIMEOUT_SEC.
- Connections beyond API_MAX_CONNECTIONS get a 503 and are closed.
- A database that cannot write (a file-size limit on the API process, as a full disk does) answers
  POST /events with 503 + Retry-After, stores nothing, keeps the keep-alive connection usable, and
  makes /healthz 503 with the reason, until it writes again.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from actionhooks.api.app import create_app
from actionhooks.api.server import bounded_protocol, uvicorn_config
from actionhooks.settings import Settings
from tests.support.engine import Engine, event, free_port, poll

# What Kubernetes injects into every pod of a namespace with a Service named `actionhooks`.
KUBERNETES = {
    "ACTIONHOOKS_PORT": "tcp://10.0.0.1:8080",
    "ACTIONHOOKS_SERVICE_HOST": "10.0.0.1",
    "ACTIONHOOKS_SERVICE_PORT": "8080",
    "ACTIONHOOKS_PORT_8080_TCP": "tcp://10.0.0.1:8080",
    "ACTIONHOOKS_PORT_8080_TCP_PROTO": "tcp",
    "ACTIONHOOKS_PORT_8080_TCP_PORT": "8080",
    "ACTIONHOOKS_PORT_8080_TCP_ADDR": "10.0.0.1",
}


@contextmanager
def served(tmp_path: Path, base: type[Any] | None = None, **settings: Any) -> Iterator[int]:
    """A real uvicorn server for the app in a thread on a free port; yields the port.

    The app gets one extra route, GET /slow, answering after SLOW_SEC (longer than the tests' deadline).
    """
    port = free_port()
    config = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", DATA_DIR=str(tmp_path), API_PORT=port,
                      **settings)
    app = create_app(config)

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(SLOW_SEC)
        return {"slow": True}
    extra = {"http": bounded_protocol(config.API_REQUEST_TIMEOUT_SEC, config.API_MAX_CONNECTIONS, base)} if base else {}
    server = uvicorn.Server(uvicorn_config(app, config, log_level="warning", **extra))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        poll(lambda: server.started, "uvicorn to start", timeout=20)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.engine.dispose()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request on `sock` and read one response (Content-Length framed): status, headers, body."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response; got {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def http(method: str, path: str, body: bytes = b"", token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


SLOW_SEC = 2.5
PROTOCOLS = pytest.mark.parametrize("base", [HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])


@PROTOCOLS
@pytest.mark.parametrize(
    "partial",
    [
        b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty",  # half the headers
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[{\"event_type\"",  # half the body
        b"",  # nothing at all
    ],
    ids=["headers", "body", "nothing"],
)
def test_a_half_sent_request_is_closed_after_the_request_timeout(tmp_path: Path, base: type, partial: bytes) -> None:
    with served(tmp_path, base, API_REQUEST_TIMEOUT_SEC=1) as port, closing(connect(port)) as sock:
        sock.sendall(partial)
        assert closed_by_server(sock, within=15), "the server kept a half-sent request open"


@PROTOCOLS
def test_the_deadline_restarts_for_each_request_of_a_keep_alive_connection(tmp_path: Path, base: type) -> None:
    with served(tmp_path, base, API_REQUEST_TIMEOUT_SEC=1) as port, closing(connect(port)) as sock:
        for _ in range(3):  # well past one deadline in total, each request in time
            assert exchange(sock, http("GET", "/healthz"))[0] == 200
            time.sleep(0.4)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert closed_by_server(sock, within=15)


@PROTOCOLS
def test_a_request_that_arrived_is_answered_however_long_the_app_takes(tmp_path: Path, base: type) -> None:
    with served(tmp_path, base, API_REQUEST_TIMEOUT_SEC=1) as port, closing(connect(port)) as sock:
        status, _, body = exchange(sock, http("GET", "/slow"))
        assert (status, json.loads(body)) == (200, {"slow": True})
        assert exchange(sock, http("GET", "/healthz"))[0] == 200  # and the connection goes on


def test_connections_beyond_the_bound_get_503_and_are_closed(tmp_path: Path) -> None:
    with served(tmp_path, API_MAX_CONNECTIONS=2, API_REQUEST_TIMEOUT_SEC=30) as port:
        first, second = connect(port), connect(port)
        try:
            assert exchange(first, http("GET", "/healthz"))[0] == 200
            assert exchange(second, http("GET", "/healthz"))[0] == 200
            with closing(connect(port)) as third:
                third.settimeout(15)
                answer = third.recv(4096)
                assert answer.startswith(b"HTTP/1.1 503 "), answer
                assert b"Retry-After: 1" in answer
                assert closed_by_server(third, within=15)
            first.close()
            # A freed slot serves again (the server notices the close first)
            def served_again() -> bool:
                with closing(connect(port)) as fourth:
                    fourth.sendall(http("GET", "/healthz"))
                    return fourth.recv(64).startswith(b"HTTP/1.1 200")
            poll(served_again, "a new connection to be served once one closed", timeout=15, every=0.2)
        finally:
            first.close()
            second.close()


# --- a database that cannot write ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_database_that_cannot_write_gets_503_with_retry_after_on_a_connection_that_stays_usable(
    tmp_path: Path,
) -> None:
    engine = Engine(tmp_path, API_REQUEST_TIMEOUT_SEC=30)
    token = engine.token(23, "admin")  # creates and migrates the database
    db_path = tmp_path / "data" / "actionhooks.db"
    # Keep a connection of ours open so the WAL and shared-memory files exist before the API starts;
    # empty the WAL, so any write of the API must grow it past the limit.
    keeper = sqlite3.connect(db_path)
    keeper.execute("PRAGMA journal_mode=WAL")
    keeper.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # Its log goes to a pipe: a log file could not grow either.
    proc = subprocess.Popen(
        [sys.executable, "-m", "actionhooks", "--config", str(engine.config_path), "api"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **KUBERNETES},
    )
    # From now on no regular file of the API may grow past 1 KB: a full disk for SQLite's WAL (the API
    # touches the database only once it serves; Python ignores SIGXFSZ, so such a write fails with EFBIG).
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        poll(lambda: _answers(engine.port) or proc.poll() is not None, "the API to answer", timeout=30)
        assert proc.poll() is None, b"".join(lines).decode()
        # The engine started despite Kubernetes' service variables, and said which it ignored
        assert b"ACTIONHOOKS_PORT_8080_TCP_ADDR: unknown setting, ignored" in b"".join(lines)
        with closing(connect(engine.port)) as sock:
            body = json.dumps([event(1, event_id="on-a-full-disk")]).encode()
            status, headers, answer = exchange(sock, http("POST", "/api/v1/events", body, token))
            assert status == 503, answer
            assert headers["retry-after"] == "5"
            detail = json.loads(answer)["detail"][0]
            assert detail["type"] == "unavailable"
            assert "cannot write" in detail["msg"]
            # The same keep-alive connection answers the next requests
            status, _, answer = exchange(sock, http("GET", "/api/v1/hooks", token=token))
            assert (status, json.loads(answer)) == (200, [])
            status, _, answer = exchange(sock, http("GET", "/healthz"))
            health = json.loads(answer)
            assert status == 503, health
            assert health["checks"]["database"].startswith("cannot write: ")
            assert "details" in health
        assert keeper.execute("SELECT count(*) FROM intake").fetchone() == (0,)  # nothing stored
        assert keeper.execute("SELECT count(*) FROM seen_events").fetchone() == (0,)
        # When the disk has room again, events are accepted and /healthz is ok
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        with closing(connect(engine.port)) as sock:
            status, _, answer = exchange(sock, http("POST", "/api/v1/events", body, token))
            assert status == 202, answer
            assert exchange(sock, http("GET", "/healthz"))[0] == 200
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        reader.join(5)
        keeper.close()


def _answers(port: int) -> bool:
    try:
        with closing(connect(port)) as sock:
            sock.settimeout(5)
            return exchange(sock, http("GET", "/healthz"))[0] in (200, 503)
    except OSError:
        return False
