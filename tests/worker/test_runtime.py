"""One Runtime per worker process, also when the threads pool starts many tasks at once."""

from __future__ import annotations

import threading
from pathlib import Path

from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings
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
