"""Resident memory of the API and the worker while 1,000,000 events wait for a receiver that is down.

Events are posted fast (requests of 1,000, 4 client threads) to one hook whose target refuses
connections; the engine accepts, routes and batches them and keeps failing to deliver. The RSS of
each role's process tree (prefork children included) is sampled every half second, while posting
and until every event is routed into batches plus a settling period. Everything waiting is in the
database (intake, outbox, deliveries), so no process should grow with the backlog.

"Tree" sums the role's processes (a prefork worker is a parent and WORKER_CONCURRENCY children); the
target is per process. Run: `.venv/bin/python bench/memory.py` (PostgreSQL on 127.0.0.1; a private Redis is started).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import common
import e2e_http
import psycopg

from tests.support.engine import Engine, free_port, postgres_database

PER_REQUEST = 1000
LIMIT_MB = 300


def waiting(dsn: str) -> tuple[int, int]:
    """(events still in intake, events in delivery batches)."""
    with psycopg.connect(dsn) as conn:
        intake = conn.execute("SELECT coalesce(sum(n_events), 0) FROM intake").fetchone()
        batched = conn.execute("SELECT coalesce(sum(n_events), 0) FROM deliveries").fetchone()
    return int(intake[0] if intake else 0), int(batched[0] if batched else 0)


class RssSampler:
    """Samples the RSS of each role's process tree every half second in a thread until stopped."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.first = {role: common.rss_mb(pid) for role, pid in pids.items()}
        self.peak = dict(self.first)
        self.last = dict(self.first)
        self.largest = dict.fromkeys(pids, 0.0)  # the largest single process of the tree
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for role, pid in self.pids.items():
                each = common.rss_each_mb(pid)
                self.last[role] = sum(each)
                self.peak[role] = max(self.peak[role], self.last[role])
                self.largest[role] = max(self.largest[role], *each, 0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds sampled after routing finished")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    print(common.machine(), file=sys.stderr)
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database("actionhooks_bench"))
        broker, _ = stack.enter_context(common.own_redis())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ah-bench-")))
        engine = Engine(folder, DATABASE_URL=url, BROKER_URL=broker, WORKER_POOL=args.pool,
                        WORKER_CONCURRENCY=args.concurrency, SCHEDULER_TICK_SEC=1.0,
                        HOOK_RETRY_PERIOD_SEC=[15, 60, 300], EVENTS_MAX_PER_REQUEST=PER_REQUEST)
        stack.callback(engine.stop)
        engine.start("api", "worker", "scheduler")
        down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        with engine.client() as admin:
            admin.post("/hooks", json={"name": "bench", "actions": ["click"], "delivery": {
                "type": "http", "url": down, "max_batch_size": 100, "batch_timeout_sec": 1}}).raise_for_status()
        pids = {role: proc.pid for role, proc in engine.procs.items()}
        sampler = RssSampler(pids)
        headers = {"Authorization": f"Bearer {engine.token(23, 'ingest')}"}
        dsn = url
        posted = 0
        t0 = time.time()
        while posted < args.events:  # in slices, so the bodies in this process stay small
            n = min(100, (args.events - posted) // PER_REQUEST)
            e2e_http.post_all(f"{engine.base_url}/api/v1/events", e2e_http.bodies(n, posted // PER_REQUEST,
                              PER_REQUEST), posted // PER_REQUEST, headers)
            posted += n * PER_REQUEST
        post_sec = time.time() - t0
        deadline = time.monotonic() + 600
        while waiting(dsn)[0] and time.monotonic() < deadline:
            time.sleep(1)
        routed_sec = time.time() - t0
        time.sleep(args.settle)
        sampler.stop()
        intake, batched = waiting(dsn)
    print(f"posted {posted:,} events in {post_sec:.0f} s; routed after {routed_sec:.0f} s; "
          f"{batched:,} events in delivery batches, {intake:,} still in intake", file=sys.stderr)
    rows = [[role, sampler.first[role], sampler.peak[role], sampler.last[role], sampler.largest[role],
             "yes" if sampler.largest[role] <= LIMIT_MB else "NO"] for role in pids]
    print(common.table(f"Resident memory (MB, process tree) with {posted:,} events waiting for a receiver that is "
                       f"down (worker {args.pool} x{args.concurrency}, PostgreSQL)",
                       ["role", "tree RSS before", "tree peak", "tree at end", "largest process peak",
                        f"<= {LIMIT_MB} MB per process"], rows))


if __name__ == "__main__":
    main()
