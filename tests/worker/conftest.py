"""Worker test fixtures: a RabbitMQ vhost of the test's own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

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
