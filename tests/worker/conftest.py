"""Worker test fixtures: a RabbitMQ vhost of the test's own, a worker Runtime on the test's database."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings
from actionhooks.worker.runtime import Runtime
from tests.delivery.brokers_fixtures import unique


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=timeout).stdout


@pytest.fixture
def vhost() -> Iterator[str]:
    """A RabbitMQ vhost of the test's own (guest may use it), deleted with everything in it afterwards."""
    name = unique("vhost")
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
def rt(engine: Engine) -> Iterator[Runtime]:
    """A worker process's Runtime on the test's database; its triggers go to an in-memory broker."""
    settings = Settings(BROKER_URL="memory://", DATA_DIR="unused")
    runtime = Runtime(settings, make_celery(settings), engine=engine)
    yield runtime
    runtime._closed.set()  # not close(): the engine is the fixture's
