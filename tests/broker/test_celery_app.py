"""The Celery app is built from Settings: triggers go to the engine's own queue, with late acks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings


def test_the_app_uses_the_configured_queue_and_acknowledges_late(tmp_path: Path) -> None:
    app = make_celery(Settings(BROKER_URL="redis://127.0.0.1:6379/9", BROKER_QUEUE="tenant-a", DATA_DIR=str(tmp_path)))
    assert app.conf.task_default_queue == "tenant-a"
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_the_embedded_broker_is_a_durable_file_under_data_dir(tmp_path: Path) -> None:
    app = make_celery(Settings(DATA_DIR=str(tmp_path)))
    assert app.conf.broker_url == f"sqlite:///{tmp_path.resolve() / 'broker.sqlite'}"
    assert app.conf.broker_transport == "actionhooks.broker.embedded:Transport"


def test_countdown_triggers_are_looked_at_well_within_the_routers_shortest_pace(tmp_path: Path) -> None:
    # The worker's timer thread sleeps up to worker_timer_precision between looks at its countdown
    # triggers (Celery's default, 1 s, ran a router's successor due in 0.1 s 0.9 s late).
    settings = Settings(DATA_DIR=str(tmp_path))
    assert make_celery(settings).conf.worker_timer_precision <= settings.ROUTE_INTERVAL_SEC / 4


@pytest.mark.parametrize("name", ["", "has space", "a/b"])
def test_a_queue_name_brokers_would_mangle_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(BROKER_QUEUE=name)
    assert caught.value.errors()[0]["loc"] == ("BROKER_QUEUE",)
