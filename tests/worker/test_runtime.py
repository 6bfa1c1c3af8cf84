"""One Runtime per worker process, also when the threads pool starts many tasks at once."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings
from actionhooks.storage import stats
from actionhooks.storage.db import engine_from_settings
from actionhooks.storage.migrate import upgrade
from actionhooks.worker.runtime import Runtime, close_runtime, runtime_for


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


def test_counts_the_database_cannot_take_are_kept_summed_and_added_once_it_can(tmp_path: Path) -> None:
    settings = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://")
    migrating = engine_from_settings(settings)
    upgrade(migrating)
    migrating.dispose()
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
