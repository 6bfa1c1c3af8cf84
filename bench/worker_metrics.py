"""What counting a delivery round for /metrics (storage/stats.py) adds to the round, on PostgreSQL.

A "round" is what a drain does per claim: claim up to 8 due batches of 100 events, send them (the
StubTransport: no network, so the bookkeeping is all that is measured), record the outcomes. The
reference is the same rounds with stats.add replaced by a no-op, alternating in the same run.
Prints a Markdown table: ms per round (median of --runs), the difference, and the statement alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actionhooks.broker.celery_app import make_celery
from actionhooks.delivery.stub import StubTransport
from actionhooks.settings import Settings
from actionhooks.storage import stats
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tables import Hook
from actionhooks.worker import deliver
from actionhooks.worker.batching import form_batches
from actionhooks.worker.runtime import Runtime
from tests.support.engine import postgres_database

BATCHES_PER_ROUND = 8
EVENTS_PER_BATCH = 100


def one_run(rt: Runtime, stub: StubTransport, hook_id: int, rounds: int, counting: bool) -> float:
    """Seconds per round for `rounds` rounds of BATCHES_PER_ROUND batches."""
    hook = rt.hooks.get(hook_id)
    assert hook is not None
    events = [{"event_id": f"e{i}", "n": i} for i in range(EVENTS_PER_BATCH)]
    with rt.sessions() as session:
        for _ in range(rounds * BATCHES_PER_ROUND):
            form_batches(session, hook, events, accepted_at=time.time())
        session.commit()
    real_add = stats.add
    if not counting:
        stats.add = lambda _session, _tally: None  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        for _ in range(rounds):
            with rt.sessions() as session:
                claimed = deliver.claim_due(session, rt, hook, limit=BATCHES_PER_ROUND)
                session.commit()
            outcomes = [deliver.Outcome(c, stub.send(c.batch), None) for c in claimed]
            with rt.sessions() as session:
                deliver.record(session, rt, hook, outcomes)
                session.commit()
        return (time.perf_counter() - started) / rounds
    finally:
        stats.add = real_add  # type: ignore[assignment]


def statement_alone(rt: Runtime, n: int) -> float:
    """Median seconds of one stats.add of a typical round's tally (4 rows), inside an open transaction."""
    tally = stats.Tally()
    tally.attempt("http", "ok", BATCHES_PER_ROUND)
    tally.delivered("http", EVENTS_PER_BATCH * BATCHES_PER_ROUND, 0.2)
    times = []
    with rt.sessions() as session:
        for _ in range(n):
            started = time.perf_counter()
            stats.add(session, tally)
            times.append(time.perf_counter() - started)
        session.commit()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    stub = StubTransport()
    with postgres_database("ah_bench_metrics") as url:
        settings = Settings(DATABASE_URL=url, DATA_DIR="/tmp", BROKER_URL="memory://")
        rt = Runtime(settings, make_celery(settings), transport_factory=lambda _c, _s: stub)
        try:
            upgrade(rt.engine)
            with rt.sessions() as session:
                row = Hook(account_id=1, name="bench", active=True, actions=["open"], filters={}, custom_data={},
                           delivery={"type": "http", "url": "http://example.org/", "max_batch_size": 100,
                                     "batch_timeout_sec": 0})
                session.add(row)
                session.commit()
            rt.hooks.refresh(force=True)
            with_stats, without = [], []
            for run in range(args.runs):
                for counting, into in ((True, with_stats), (False, without)):
                    into.append(one_run(rt, stub, row.id, args.rounds, counting))
                print(f"run {run + 1}: {with_stats[-1] * 1000:.2f} vs {without[-1] * 1000:.2f} ms", file=sys.stderr)
            alone = statement_alone(rt, 500)
        finally:
            rt.close()
    a, b = statistics.median(with_stats), statistics.median(without)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared); PostgreSQL")
    print()
    print("| round (8 batches of 100 events, stub transport) | ms per round (median) |")
    print("|---|---|")
    print(f"| with the /metrics totals (stats.add) | {a * 1000:.2f} |")
    print(f"| reference: same rounds, stats.add a no-op | {b * 1000:.2f} |")
    print(f"| difference | {(a - b) * 1000:+.2f} ({(a - b) / b * 100:+.1f}%) |")
    print(f"| the stats.add statement alone (median of 500) | {alone * 1000:.3f} |")


if __name__ == "__main__":
    main()
