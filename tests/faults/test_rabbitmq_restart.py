"""The shared RabbitMQ's application stopped and started while a rabbitmq_queue hook delivers.

`rabbitmqctl stop_app` / `start_app` (a few seconds) rather than a full restart, always started
again even when the test fails. Messages are counted by consuming the target queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pika
import pytest

from tests.delivery.brokers_fixtures import Rabbit, rabbit
from tests.support.engine import Engine, poll, redis_broker, running_engine
from tests.support.faults import outstanding, post_events, rabbitmq_app_stopped, report, settle

pytestmark = [pytest.mark.slow, pytest.mark.stops_shared_service]

__all__ = ["rabbit"]  # the fixture, imported for pytest


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with running_engine(
        tmp_path, "api", "worker", "scheduler",
        BROKER_URL=redis_broker(), WORKER_POOL="threads", WORKER_CONCURRENCY=2,
        HOOK_HTTP_TIMEOUT_SEC=2, HOOK_RETRY_TIMES=30, HOOK_RETRY_PERIOD_SEC=[1],
    ) as eng:
        yield eng


def _consume_all(queue: str) -> list[str]:
    """message_ids of every message in `queue` (consumed), over a fresh connection."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    try:
        channel = connection.channel()
        ids: list[str] = []
        while True:
            method, properties, _ = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return ids
            ids.append(properties.message_id)
    finally:
        connection.close()


def _attempts(api: httpx.Client, hook_id: int, outcome: str) -> int:
    return sum(a["outcome"] == outcome for a in api.get(f"/hooks/{hook_id}/attempts").json())


def test_a_rabbitmq_restart_mid_delivery_loses_no_acknowledged_event(engine: Engine, rabbit: Rabbit) -> None:
    queue = rabbit.name("fault")
    rabbit.connection.close()  # the app restart would close it anyway; cleanup reopens it
    delivery = {"type": "rabbitmq_queue", "host": "127.0.0.1", "port": 5672, "queue": queue}
    with engine.client() as api:
        hook = api.post("/hooks", json={"name": "queue hook", "actions": ["click"], "delivery": delivery}).json()
        # Given a hook that is delivering
        sent = post_events(api, [f"amqp-before-{i}" for i in range(300)])
        poll(lambda: _attempts(api, hook["id"], "ok"), "a first delivered batch")
        # When RabbitMQ's application stops while more events are accepted, then starts again
        stopping = time.monotonic()
        with rabbitmq_app_stopped():
            sent += post_events(api, [f"amqp-during-{i}" for i in range(300)])
            poll(lambda: _attempts(api, hook["id"], "error"), "a failed attempt while RabbitMQ is down")
            assert outstanding(engine) > 0
        outage = time.monotonic() - stopping
        sent += post_events(api, [f"amqp-after-{i}" for i in range(300)])
        assert len(sent) == 900
        # Then every acknowledged event ends up in the queue (or the failed list)
        consumed: list[str] = []

        def delivered() -> list[str]:
            consumed.extend(_consume_all(queue))
            return consumed

        result = settle(engine, api, hook["id"], sent, delivered=delivered, timeout=60)
        errors = _attempts(api, hook["id"], "error")
    report(f"RabbitMQ stop_app/start_app ({outage:.1f}s outage, {errors} failed attempts)", result)
    assert result.lost == []
    assert result.failed_listed == 0  # 30 attempts 1 s apart outlast the outage
