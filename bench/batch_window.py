"""What appending to an open batch window costs as the window fills, on SQLite and PostgreSQL.

One HTTP hook with a window that never closes in the run (max_batch_size 10,000, batch_timeout_sec
3600) gets one event per call of `form_batches`, each call in its own transaction (a router's chunk
that matched one event). Prints CPU-µs and wall-µs per call (this process; the database server's
CPU is not in the CPU figure) at several window sizes, so a cost that grows with the window shows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings
from actionhooks.storage.migrate import upgrade
from actionhooks.worker.batching import form_batches
from actionhooks.worker.runtime import Runtime
from tests.support.engine import postgres_database
from tests.support.runtime import hook_with_batch

EVENT = {
    "event_id": "00000000-0000-0000-0000-000000000000", "event_type": "open", "event_date": "2026-01-25T15:04:05Z",
    "account_id": 1, "list_id": 111, "profile_id": "abcdef0123456789", "is_test": False,
    "event_data": {"campaign_id": 973, "message_id": 17, "send_message_id": "s-1", "user_agent": "Mozilla/5.0 " * 8},
    "custom_data": {"plan": "gold", "city": "Lisbon"},
}


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_database("ah_bench_window") as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/w.db"


def measure(url: str, checkpoints: list[int]) -> list[tuple[int, float, float]]:
    """(window size, CPU-µs per call, wall-µs per call) over the 100 calls before each checkpoint."""
    settings = Settings(DATABASE_URL=url, DATA_DIR="/tmp", BROKER_URL="memory://")
    rt = Runtime(settings, make_celery(settings))
    out = []
    try:
        upgrade(rt.engine)
        delivery = {"type": "http", "url": "http://example.org/", "max_batch_size": 10_000, "batch_timeout_sec": 3600}
        hook = rt.hooks.get(hook_with_batch(rt, delivery, []))  # no events yet: an empty window
        if hook is None:
            raise RuntimeError("the bench hook did not compile")
        now = time.time()
        size = 0
        with rt.sessions() as session:
            for target in checkpoints:
                while size < target - 100:
                    form_batches(session, hook, [EVENT], now)
                    session.commit()
                    size += 1
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(100):
                    form_batches(session, hook, [EVENT], now)
                    session.commit()
                size += 100
                out.append((size, (time.process_time() - cpu) * 1e4, (time.perf_counter() - wall) * 1e4))
    finally:
        rt.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sizes", default="100,1000,3000,9000")
    args = parser.parse_args()
    checkpoints = [int(s) for s in args.sizes.split(",")]
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print("| database | events in the window | CPU-µs per append | wall-µs per append |")
    print("|---|---|---|---|")
    for kind in kinds:
        with database(kind) as url:
            for size, cpu, wall in measure(url, checkpoints):
                print(f"| {kind} | {size:,} | {cpu:,.0f} | {wall:,.0f} |")


if __name__ == "__main__":
    main()
