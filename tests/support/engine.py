"""The engine as a user runs it: real `actionhooks` processes on loopback, driven over HTTP.

Each test gets its own main.json, SQLite file (or PostgreSQL database), Redis database number and
API port; every process is started here and stopped by its pid at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import redis

from actionhooks.events import example_event

T = TypeVar("T")

REDIS_URL = "redis://127.0.0.1:6379/9"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def poll(check: Callable[[], T | None], what: str, timeout: float = 20.0, every: float = 0.05) -> T:
    """Call `check` until it returns something truthy, or fail at the deadline naming `what`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def redis_broker() -> str:
    """The shared Redis as broker; each Engine gets a queue of its own (BROKER_QUEUE), so engines of
    concurrent test runs never take each other's tasks."""
    return REDIS_URL


@contextmanager
def postgres_database(prefix: str = "actionhooks_e2e") -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"{prefix}_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Engine:
    """One engine deployment: a config folder, its processes by role, and an HTTP client for its API."""

    def __init__(self, folder: Path, **overrides: Any) -> None:
        self.folder = folder
        self.port = free_port()
        config: dict[str, Any] = {
            "DATABASE_URL": f"sqlite:///{folder / 'data' / 'actionhooks.db'}",
            "DATA_DIR": str(folder / "data"),
            "API_HOST": "127.0.0.1",
            "API_PORT": self.port,
            "HOOK_ALLOW_PRIVATE_TARGETS": True,
            "HOOK_HTTP_TIMEOUT_SEC": 2,
            "HOOK_RETRY_PERIOD_SEC": [1],
            "WORKER_POOL": "threads",
            "WORKER_CONCURRENCY": 4,
            "SCHEDULER_TICK_SEC": 0.2,
            "LOG_LEVEL": "INFO",
            "BROKER_QUEUE": f"ah-test-{uuid.uuid4().hex[:12]}",
        }
        config.update(overrides)
        self.config = config
        self.config_path = folder / "main.json"
        self.config_path.write_text(json.dumps(config))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._tokens: dict[tuple[int, str], str] = {}

    # processes -----------------------------------------------------------------------------
    def start(self, *roles: str) -> Engine:
        """Start processes by role; "worker#2" starts one more worker process of its own name."""
        for role in roles:
            log = self.folder / f"{role}.log"
            self.logs[role] = log
            command = role.split("#", maxsplit=1)[0]
            with open(log, "ab") as out:
                self.procs[role] = subprocess.Popen(
                    [sys.executable, "-m", "actionhooks", "--config", str(self.config_path), command],
                    cwd=self.folder,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        for role in roles:
            self.wait_ready(role)
        return self

    def wait_ready(self, role: str) -> None:
        if role in ("api", "run"):
            poll(self._healthy, f"{role} to answer /healthz", timeout=30)
        elif role.split("#", maxsplit=1)[0] == "worker":
            poll(lambda: b" ready." in self.logs[role].read_bytes() or self._died(role), "worker ready", timeout=30)
        self._died(role)

    def _died(self, role: str) -> bool:
        proc = self.procs[role]
        if proc.poll() is not None:
            raise AssertionError(f"{role} exited with {proc.returncode}:\n{self.logs[role].read_text()[-4000:]}")
        return False

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        """Signal a role's whole process group (a prefork worker's children too) and reap it."""
        proc = self.procs.pop(role)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop(self) -> None:
        for role in list(self.procs):
            self.kill(role, signal.SIGTERM)
        broker = str(self.config.get("BROKER_URL", ""))
        if broker.startswith("redis://"):
            queue = self.config["BROKER_QUEUE"]
            client = redis.Redis.from_url(broker)
            client.delete(queue, *client.keys(f"_kombu.binding.{queue}*"))

    # API -----------------------------------------------------------------------------------
    def token(self, account_id: int = 23, scope: str = "admin") -> str:
        key = (account_id, scope)
        if key not in self._tokens:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "actionhooks",
                    "--config",
                    str(self.config_path),
                    "token",
                    "create",
                    "--account",
                    str(account_id),
                    "--scope",
                    scope,
                ],
                cwd=self.folder,
                capture_output=True,
                text=True,
                check=True,
            )
            self._tokens[key] = out.stdout.strip().splitlines()[-1]
        return self._tokens[key]

    def client(self, account_id: int = 23, scope: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            headers={"Authorization": f"Bearer {self.token(account_id, scope)}"},
            timeout=10,
        )


@contextmanager
def running_engine(folder: Path, *roles: str, **overrides: Any) -> Iterator[Engine]:
    engine = Engine(folder, **overrides)
    try:
        engine.start(*roles)
        yield engine
    finally:
        engine.stop()


def event(n: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid captured event (the API docs' example: an email click of account 23 in database 111),
    with its own profile and send ids, and overrides."""
    base = example_event()
    base["profile_id"] = f"profile-{n}"
    base["event_data"]["send_message_id"] = f"send-{n}"
    base.update(fields)
    return base


def http_hook(url: str, **delivery: Any) -> dict[str, Any]:
    """A hook body delivering click/open events over HTTP to `url`."""
    return {
        "name": "test hook",
        "actions": ["click", "open", "deliv"],
        "delivery": {"type": "http", "url": url, **delivery},
    }
