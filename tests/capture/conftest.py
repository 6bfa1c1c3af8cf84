"""A capture engine (api, worker, scheduler on SQLite and the embedded broker) and a receiver, per module,
with helpers that create a source and a hook selecting only that source's events (`pixels: [id]`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.engine import Engine, running_engine
from tests.support.receiver import Receiver


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="module")
def capture_engine(engine_dir: Path) -> Iterator[Engine]:
    with running_engine(engine_dir, "api", "worker", "scheduler") as engine:
        yield engine


@pytest.fixture(scope="module")
def hook_receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


@dataclass
class Captured:
    """One source with its own hook and receiver path: what its requests produce, as delivered."""

    engine: Engine
    receiver: Receiver
    source: dict[str, Any]
    path: str

    @property
    def key(self) -> str:
        return str(self.source["key"])

    def url(self, endpoint: str) -> str:
        return f"{self.engine.base_url}/t/{self.key}/{endpoint}"

    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.receiver.requests if r.path == self.path for e in orjson.loads(r.body)]

    def wait_events(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until `count` events of this source were delivered; returns all of them."""
        self.receiver.wait_until(lambda _: len(self.events()) >= count, f"{count} event(s) at {self.path}", timeout)
        return self.events()


def make_source(engine: Engine, receiver: Receiver, account_id: int = 23, *, actions: list[str] | None = None,
                **spec: Any) -> Captured:
    with engine.client(account_id) as admin:
        reply = admin.post("/sources", json={"name": "test source", **spec})
        assert reply.status_code == 201, reply.text
        source = reply.json()
        path = f"/hook/{uuid.uuid4().hex}"
        hook = {
            "name": f"capture {source['id']}",
            "actions": actions or source["event_types"],
            "filters": {"pixels": [source["id"]]},
            "delivery": {"type": "http", "url": f"http://127.0.0.1:{receiver.port}{path}", "batch_timeout_sec": 0},
        }
        reply = admin.post("/hooks", json=hook)
        assert reply.status_code == 201, reply.text
    return Captured(engine, receiver, source, path)


def refused_count(engine: Engine, kind: str, reason: str) -> float:
    """actionhooks_capture_refused_total{kind, reason} from the API's /metrics."""
    text = httpx.get(f"{engine.base_url}/metrics", timeout=10).text
    prefix = f'actionhooks_capture_refused_total{{kind="{kind}",reason="{reason}"}} '
    return next((float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)), 0.0)
