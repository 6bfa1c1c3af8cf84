"""One Runtime per worker process, also when the threads pool starts many tasks at once; what its watcher
thread does between tasks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from actionhooks.broker.celery_app import make_celery
from actionhooks.delivery import http
from actionhooks.delivery.base import Batch
from actionhooks.hooks.matching import compile_hook
from actionhooks.settings import Settings
from actionhooks.storage import stats
from actionhooks.storage.db import engine_from_settings
from actionhooks.storage.migrate import upgrade
from actionhooks.worker.runtime import Runtime, close_runtime, runtime_for
from tests.support.raw_answers import RawAnswerServer


def _watchers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "actionhooks-hook-watch")


def test_tasks_starting_together_share_one_runtime_and_one_hook_watcher(tmp_path: Path) -> None:
    settings = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://")
    celery = make_celery(settings)
    before = _watchers()
    start = threading.Barrier(8)
    got: list[Runtime] = []

    def task() -> None:
        start.wait()
        got.append(runtime_for(celery))

    threads = [threading.Thread(target=task) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len(got) == 8
        assert len({id(rt) for rt in got}) == 1
        assert _watchers() == before + 1
    finally:
        close_runtime()
    # And closing it stops its watcher
    assert _watchers() == before


def migrated(tmp_path: Path, **settings: object) -> Settings:
    """Settings of a worker on a new, migrated SQLite database under `tmp_path`, with `settings` on top."""
    made = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
                    **settings)
    migrating = engine_from_settings(made)
    upgrade(migrating)
    migrating.dispose()
    return made


def test_counts_the_database_cannot_take_are_kept_summed_and_added_once_it_can(tmp_path: Path) -> None:
    settings = migrated(tmp_path)
    runtime = Runtime(settings, make_celery(settings))
    try:
        # Given a database that refuses the counters' writes (its table renamed away) while tasks run
        with runtime.engine.begin() as conn:
            conn.execute(text("ALTER TABLE worker_stats RENAME TO worker_stats_away"))
        for _ in range(5000):
            runtime.count_task("route")
        runtime._flush_counts()
        # Then nothing is lost, and what waits is one sum, not 5,000 notes
        assert dict(runtime._unflushed.values) == {(stats.TASKS, "task=route"): 5000}
        # And once the database takes writes again, the next round adds them, once
        with runtime.engine.begin() as conn:
            conn.execute(text("ALTER TABLE worker_stats_away RENAME TO worker_stats"))
        runtime.count_task("drain")
        runtime._flush_counts()
        runtime._flush_counts()
        with runtime.engine.connect() as conn:
            totals = stats.totals(conn)
        assert totals[(stats.TASKS, "task=route")] == 5000
        assert totals[(stats.TASKS, "task=drain")] == 1
    finally:
        runtime.close()


def test_the_watcher_closes_an_idle_hooks_expired_keep_alive_connections_without_a_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "KEEPALIVE_EXPIRY_SEC", 0.0)  # expired as soon as it is idle: no waiting for 4 s
    settings = migrated(tmp_path, HOOK_ALLOW_PRIVATE_TARGETS=True)
    server = RawAnswerServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", keep_open=True)
    runtime = Runtime(settings, make_celery(settings))
    try:
        # Given a hook whose last batch went out on a keep-alive connection, and no event since
        hook = compile_hook({"id": 7, "account_id": 1, "version": 1, "active": True, "name": "h", "actions": ["open"],
                             "delivery": {"type": "http", "url": server.url}}, settings)
        with runtime.transports.using(hook) as transport:
            transport.send(Batch(hook_id=7, batch_id="b1", attempt=1, events=[{"n": 1}]))
        # When the watcher runs its rounds
        runtime.start_watching(every=0.01)
        # Then it closes the expired connection; the transport itself stays cached for the hook's next batch
        server.wait_for_client_closes(1)
        assert (server.requests, len(runtime.transports)) == (1, 1)
    finally:
        runtime.close()
        server.close()
