"""The Celery app, built from Settings (no module-level app, no global settings).

The broker carries only small triggers ("route account 23", "drain hook 17"); events, batches and
attempt counters live in the database. A lost or duplicated trigger therefore costs a little
latency or an idle task, never an event, and any broker — the embedded SQLite one included — gives
the same guarantees.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from actionhooks.settings import Settings

ROUTE_TASK = "actionhooks.route"
DRAIN_TASK = "actionhooks.drain"
BACKFILL_TASK = "actionhooks.backfill"
TIMER_PRECISION_SEC = 0.02


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`; the worker role registers the tasks on it (worker/tasks.py)."""
    app = Celery("actionhooks", broker=settings.broker_url, set_as_current=False)
    conf: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_default_queue": settings.BROKER_QUEUE,
        # Countdown triggers (batch windows, the router's pace) wait in the worker's timer thread, which
        # sleeps up to this long between looks, uninterrupted by a new entry: at Celery's default of 1 s,
        # a trigger due in 0.1 s ran 0.9 s late (median, embedded broker, worker log of bench/capture.py).
        "worker_timer_precision": TIMER_PRECISION_SEC,
    }
    if settings.embedded_broker:
        conf["broker_transport"] = "actionhooks.broker.embedded:Transport"
    elif settings.broker_url.startswith(("redis://", "rediss://")):
        conf["broker_transport"] = "actionhooks.broker.redis:Transport"  # survives a lost Redis (its docstring)
        # Triggers are cheap to redo, but an unacked one must come back soon after a worker dies.
        conf["broker_transport_options"] = {"visibility_timeout": 300}
    app.conf.update(conf)
    app.actionhooks_settings = settings  # type: ignore[attr-defined]
    return app


def close_celery(app: Celery) -> None:
    """Close the broker connections `app` opened to send tasks. Celery.close() only forgets its
    connection pool; kombu's pools (process-wide, keyed by broker URL) keep the sockets open."""
    producers = app.amqp._producer_pool
    if producers is not None:
        producers.force_close_all()
    if app._pool is not None:
        app._pool.force_close_all()
    app.close()
