"""Every worker process closes what it opened when Celery shuts it down (issue 14): asserted on
RabbitMQ's own list of connections, in a vhost of the test's own, while the process lives on."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from celery.signals import worker_process_shutdown
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # as in tests/api/conftest.py: starlette asks for the httpx2 package; httpx (installed) works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from actionhooks.api.app import create_app
from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tokens import create_token
from actionhooks.worker.deliver import drain_hook
from actionhooks.worker.runtime import runtime_for
from actionhooks.worker.tasks import register_tasks
from tests.delivery.brokers_fixtures import unique
from tests.support.engine import event, poll
from tests.support.runtime import hook_with_batch
from tests.worker.test_broker_delivery import amqp, connections_in


def test_a_worker_process_closes_its_broker_and_transport_connections_on_shutdown(
    tmp_path: Path, vhost: str
) -> None:
    settings = Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", DATA_DIR=str(tmp_path),
        BROKER_URL=f"amqp://guest:guest@127.0.0.1:5672/{vhost}", BROKER_QUEUE=unique("q"),
        HOOK_ALLOW_PRIVATE_TARGETS=True,
    )
    celery = make_celery(settings)
    register_tasks(celery)  # connects the shutdown signals, as `actionhooks worker` does
    assert len(connections_in(vhost)) == 0
    # Given this process's runtime, which sent a trigger and delivered a batch to a RabbitMQ queue
    rt = runtime_for(celery)
    upgrade(rt.engine)
    hook_id = hook_with_batch(rt, amqp("rabbitmq_queue", vhost, queue=unique("dest")), [{"n": 1}])
    assert drain_hook(rt, hook_id) == 1
    rt.triggers.drain(hook_id)
    poll(lambda: len(connections_in(vhost)) >= 2, "the trigger producer's and the transport's connections", timeout=30)
    # When Celery tells the process it shuts down (what billiard sends in a prefork child as it exits)
    worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    # Then RabbitMQ lists none of its connections any more, while the process is still alive
    poll(lambda: len(connections_in(vhost)) == 0, "RabbitMQ to list no connection of the vhost", timeout=30, every=0.5)
    assert rt.engine.pool.checkedout() == 0


def test_the_api_closes_its_trigger_senders_connection_on_shutdown(tmp_path: Path, vhost: str) -> None:
    settings = Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", DATA_DIR=str(tmp_path),
        BROKER_URL=f"amqp://guest:guest@127.0.0.1:5672/{vhost}", BROKER_QUEUE=unique("q"),
    )
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {create_token(app.state.sessions, 1, 'ingest')}"}
    with TestClient(app) as client:
        # Given an API that accepted an event, so it created its trigger sender and connected to RabbitMQ
        assert client.post("/api/v1/events", json=event(1, account_id=1), headers=headers).status_code == 202
        poll(lambda: len(connections_in(vhost)) >= 1, "the API's producer connection", timeout=30)
    # When the API shuts down, then RabbitMQ lists no connection of it any more
    poll(lambda: len(connections_in(vhost)) == 0, "RabbitMQ to list no connection of the vhost", timeout=30, every=0.5)
