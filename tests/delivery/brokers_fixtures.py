"""Fixtures of the broker transports' tests: RabbitMQ on 127.0.0.1:5672 and the Tansu Kafka test broker.

Import the fixtures you use into your test module (`from tests.delivery.brokers_fixtures import rabbit`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

__all__ = ["Rabbit", "closed_loopback_port", "kafka_bootstrap", "rabbit", "sample_event"]


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound then released), for unreachable targets."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def sample_event(i: int = 0, event_type: str = "open", **fields: Any) -> dict[str, Any]:
    """An event for a broker transport's test: its own event_id, profile `profile-{i}`, non-ASCII custom data."""
    return {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "event_type": event_type,
        "event_date": "2024-05-01T10:00:00.5Z",
        "account_id": 23,
        "is_test": False,
        "profile_id": f"profile-{i}",
        "list_id": 7,
        "event_data": {"campaign_id": 973, "n": i},
        "custom_data": {"email": "ann@example.com", "unicode": "Привет"},
        **fields,
    }


def unique(prefix: str) -> str:
    return f"ah-test-{prefix}-{uuid.uuid4().hex[:10]}"


class Rabbit:
    """The test's own RabbitMQ client: unique names, inspection, and deletion of every name it handed out."""

    def __init__(self, vhost: str = "/") -> None:
        self.parameters = pika.ConnectionParameters("127.0.0.1", 5672, vhost)
        self.connection = pika.BlockingConnection(self.parameters)
        self.channel = self.connection.channel()
        self._queues: list[str] = []
        self._exchanges: list[str] = []

    def name(self, prefix: str) -> str:
        """A unique queue name, deleted at the end of the test (for queues the transport declares)."""
        name = unique(prefix)
        self._queues.append(name)
        return name

    def exchange(self, prefix: str = "x") -> str:
        """A unique exchange name, deleted at the end of the test."""
        name = unique(prefix)
        self._exchanges.append(name)
        return name

    def queue(self, prefix: str = "q", **arguments: object) -> str:
        """Declare a durable queue with a unique name (and optional x-arguments)."""
        name = self.name(prefix)
        self.channel.queue_declare(name, durable=True, arguments=arguments or None)
        return name

    def messages(self, queue: str, count: int, timeout: float = 5.0) -> list[tuple[object, object, bytes]]:
        """The next `count` messages of `queue` as (method, properties, body); fails at the deadline."""
        got: list[tuple[object, object, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is not None:
                got.append((method, properties, body))
            elif time.monotonic() > deadline:
                raise AssertionError(f"expected {count} message(s) in {queue} in {timeout}s, got {len(got)}")
            else:
                self.connection.sleep(0.02)  # polling a queue: basic_get has no wait
        return got

    def depth(self, queue: str) -> int:
        """Messages ready in `queue` now."""
        count: int = self.channel.queue_declare(queue, passive=True).method.message_count
        return count

    def reopen(self) -> None:
        """A fresh channel (after a test provoked a channel error), or a fresh connection if it was lost."""
        if not self.connection.is_open:
            self.connection = pika.BlockingConnection(self.parameters)
        self.channel = self.connection.channel()

    def close(self) -> None:
        self.reopen()
        for kind, names in (("queue", self._queues), ("exchange", self._exchanges)):
            for name in names:
                try:
                    getattr(self.channel, f"{kind}_delete")(name)
                except pika.exceptions.ChannelClosed:
                    self.reopen()
        self.connection.close()


@pytest.fixture
def rabbit() -> Iterator[Rabbit]:
    """A RabbitMQ client for the test; every queue and exchange it named is deleted afterwards."""
    client = Rabbit()
    try:
        yield client
    finally:
        client.close()


def _load_kafka_broker_script():  # type: ignore[no-untyped-def]
    path = Path(__file__).resolve().parents[2] / "scripts" / "kafka_broker.py"
    spec = importlib.util.spec_from_file_location("kafka_broker", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a Kafka-compatible broker: $ACTIONHOOKS_TEST_KAFKA, else one started here.

    The broker keeps everything in memory: tests use unique topic and group names.
    """
    if os.environ.get("ACTIONHOOKS_TEST_KAFKA"):
        yield os.environ["ACTIONHOOKS_TEST_KAFKA"]
        return
    kafka_broker = _load_kafka_broker_script()
    pid, bootstrap = kafka_broker.start_broker(None)
    try:
        yield bootstrap
    finally:
        kafka_broker.stop_broker(pid)
