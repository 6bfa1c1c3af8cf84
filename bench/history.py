"""History: the event archive's cost per event at intake, its storage per million events, backfill
throughput from a large archive, and expiring one day of it — on SQLite and PostgreSQL.

Measured in-process on the engine's own functions (accept_events, archive.*, the worker's
run_backfill and drain_hook), so the figures are the archive's and the backfill's, not HTTP's:

1. intake: µs per event of accept_events with the archive off, on (one row per request holding the
   intake blob: what the engine does), and a row-per-event layout written beside it as the reference
   the choice was made against (requests of 100 events).
2. fill: --events archived events (requests of 100 realistic events) within one day, and the bytes
   they take (PostgreSQL: the partition's total relation size; SQLite: pages used).
3. backfill: a hook whose filters select half of them; the job's task function and the drain run
   in a loop until done, delivering to a transport that only counts (the HTTP encoding is the live
   path's cost, measured in bench/e2e_http.py). Reference in the same run: reading the same
   interval with archive.read_slice alone (decode, no matching, rendering or batching).
4. expiry: the day expired by `archive.maintain` — PostgreSQL drops the day's partition; SQLite
   deletes in chunks. Reference on PostgreSQL: the same events in the default partition, which
   expires in chunks like SQLite (what a non-partitioned table would cost at best).

5. isolation (real api, worker and scheduler processes, a private Redis as broker): the delivery latency of
   another hook's live events, one every 0.25 s, while a backfill of --isolation-events archived
   events runs, beside the same measurement without a backfill; and the backfill's end-to-end
   rate over HTTP to a loopback receiver.

Run: `.venv/bin/python bench/history.py [--events 1000000] [--databases sqlite,postgresql]
[--parts archive,isolation] [--isolation-events 100000]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import common
import httpx
import orjson
import psycopg
from sqlalchemy import Engine, func, select, text

from actionhooks.broker.celery_app import make_celery
from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.hooks.models import HookSpec
from actionhooks.settings import Settings
from actionhooks.storage import archive, backfills
from actionhooks.storage.db import make_engine, session_factory
from actionhooks.storage.hooks import SqlHookRepository
from actionhooks.storage.intake import accept_events
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tables import ARCHIVE_PARTITION_SCHEMA, ArchivedRequest
from actionhooks.worker.backfill import run_backfill
from actionhooks.worker.deliver import drain_hook
from actionhooks.worker.runtime import Runtime

PER_REQUEST = 100
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


class Counting(Transport[Any]):
    """Delivers nowhere and counts: the receiver is not what is measured."""

    type = "counting"

    def __init__(self) -> None:
        super().__init__(None, Settings())
        self.events = 0
        self._lock = threading.Lock()

    def send(self, batch: Batch) -> Receipt:
        with self._lock:  # the drain sends on several threads
            self.events += len(batch.events)
        return Receipt(latency_ms=0.0, payload=None)

    def close(self) -> None:
        pass


def make_event(n: int) -> dict[str, Any]:
    """A realistic email event (~330 bytes as JSON) with random ids (as incompressible as real ones),
    campaign 1 or 2 alternately."""
    noise = os.urandom(24).hex()
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "open",
        "event_date": "2026-03-04T13:13:19.034315Z",
        "account_id": 23,
        "list_id": 111,
        "profile_id": noise[:16],
        "is_test": False,
        "event_data": {
            "campaign_id": 1 + n % 2,
            "message_id": 17,
            "segment_id": 0,
            "resource_id": 3,
            "send_message_id": f"5a9bf01a17_3cd_11_6f_0_2.{noise[16:]}",
        },
    }


def request_blob(r: int) -> bytes:
    return orjson.dumps([make_event(r * PER_REQUEST + k) for k in range(PER_REQUEST)])


def intake_cost(engine: Engine, requests: int) -> dict[str, float]:
    """µs per event of accepting requests of PER_REQUEST events: archive off, on, and row per event."""
    sessions = session_factory(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_archive_per_event"))
        conn.execute(text(
            "CREATE TABLE bench_archive_per_event (accepted_at DOUBLE PRECISION NOT NULL, event_id VARCHAR(100) "
            "NOT NULL, account_id BIGINT NOT NULL, event BYTEA NOT NULL, PRIMARY KEY (accepted_at, event_id))"
            .replace("BYTEA", "BLOB" if engine.dialect.name == "sqlite" else "BYTEA")
        ))
        conn.execute(text("CREATE INDEX ix_bench_per_event ON bench_archive_per_event (account_id, accepted_at)"))
    modes = ("off", "per request (engine)", "per event (reference)")
    timings: dict[str, list[float]] = {mode: [] for mode in modes}
    rounds = 5  # modes interleaved, median of rounds: the machine is shared and its load moves
    for _round in range(rounds):
        for mode in modes:
            batches = [[make_event(k) for k in range(PER_REQUEST)] for _ in range(requests // rounds)]
            started = time.perf_counter()
            for events in batches:
                with sessions() as session:
                    accept_events(session, 23, events, supplied_ids=[], dedup_window_sec=60,
                                  archive=mode.startswith("per request"))
                    if mode.startswith("per event"):
                        now = time.time()
                        session.execute(
                            text("INSERT INTO bench_archive_per_event VALUES (:a, :e, 23, :b)"),
                            [{"a": now, "e": e["event_id"], "b": orjson.dumps(e)} for e in events],
                        )
                        session.commit()
            timings[mode].append((time.perf_counter() - started) / (requests // rounds * PER_REQUEST) * 1e6)
            with engine.begin() as conn:  # keep the intake the same size for every mode
                conn.execute(text("DELETE FROM intake"))
                conn.execute(text("DELETE FROM route_signals"))
    results = {mode: common.median(values) for mode, values in timings.items()}
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_archive_per_event"))
        conn.execute(text("DELETE FROM event_archive WHERE account_id = 23"))
    return results


def fill(engine: Engine, events: int, day: datetime, request_base: int) -> float:
    """Archive `events` events spread over `day`; returns seconds taken."""
    requests = events // PER_REQUEST
    step = 86_000 / max(requests, 1)
    started = time.perf_counter()
    chunk = 500
    with engine.begin() as conn:
        for first in range(0, requests, chunk):
            rows = [
                {"accepted_at": day.timestamp() + 100 + r * step, "id": request_base + r, "account_id": 23,
                 "n_events": PER_REQUEST, "events": request_blob(r)}
                for r in range(first, min(first + chunk, requests))
            ]
            conn.execute(ArchivedRequest.__table__.insert(), rows)
    return time.perf_counter() - started


def size_bytes(engine: Engine, day: datetime) -> int:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            name = f"{ARCHIVE_PARTITION_SCHEMA}.{archive.partition_name(day)}"
            return int(conn.execute(text(f"SELECT pg_total_relation_size('{name}')")).scalar_one())
        try:  # the archive's own pages (table and index), when SQLite was built with dbstat
            return int(conn.exec_driver_sql(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN ('event_archive', 'ix_event_archive_account')"
            ).scalar_one())
        except Exception:  # without dbstat: the pages in use, everything else included
            pass
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int((pages - free) * size)


def backfill_run(engine: Engine, tmp: Path, day: datetime) -> dict[str, float]:
    transport = Counting()
    settings = Settings(DATA_DIR=str(tmp), BROKER_URL="memory://")
    rt = Runtime(settings, make_celery(settings), engine=engine, transport_factory=lambda _c, _s: transport)
    try:
        spec = {"name": "crm", "actions": ["open"], "filters": {"campaigns": [1]},
                "custom_data": {"values": {"source": "backfill of {{event_type}}"}},
                "delivery": {"type": "http", "url": "http://example.org/", "max_batch_size": 100}}
        hook_id = SqlHookRepository(rt.sessions).add(23, HookSpec.model_validate(spec)).id
        with rt.sessions() as session:
            job_id = backfills.create(session, hook_id, 23, from_at=day.timestamp(),
                                      to_at=(day + timedelta(days=1)).timestamp(), now=time.time())
            session.commit()
        in_task = in_drain = 0.0
        started = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            run_backfill(rt, job_id)
            t1 = time.perf_counter()
            drain_hook(rt, hook_id)
            in_task += t1 - t0
            in_drain += time.perf_counter() - t1
            with rt.sessions() as session:
                backfills.settle(session, time.time())
                session.commit()
                p = backfills.progress(session, 23, job_id)
            if p.phase == "finished":
                break
        total = time.perf_counter() - started
        # The reference: reading the same interval, nothing else.
        t0 = time.perf_counter()
        cursor, read = None, 0
        with rt.sessions() as session:
            while True:
                found = archive.read_slice(session, 23, day.timestamp(), (day + timedelta(days=1)).timestamp(),
                                           after=cursor, max_events=2000)
                if found.last is None:
                    break
                read += len(found.events)
                cursor = found.last
        read_only = time.perf_counter() - t0
        assert transport.events == p.delivered == p.matched, (transport.events, p)
        return {"scanned": p.scanned, "delivered": p.delivered, "total_s": total, "task_s": in_task,
                "drain_s": in_drain, "read_only_s": read_only, "read": read}
    finally:
        rt.close()


def expire_day(engine: Engine, day: datetime) -> tuple[float, archive.Maintained, int]:
    """Seconds to expire everything up to the end of `day` (repeating maintain until finished)."""
    now = (day + timedelta(days=1)).timestamp() + 3600  # retention of one hour: the day is past it
    sessions = session_factory(engine)
    started = time.perf_counter()
    dropped = deleted = runs = 0
    with sessions() as session:
        while True:
            result = archive.maintain(session, now, hours=1)
            runs += 1
            dropped += result.dropped
            deleted += result.deleted
            if result.finished:
                break
    took = time.perf_counter() - started
    return took, archive.Maintained(0, dropped, deleted, True), runs


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ArchivedRequest)).scalar_one())


def run_database(name: str, url: str, tmp: Path, events: int, intake_requests: int) -> list[list[object]]:
    engine = make_engine(url)
    upgrade(engine)
    rows: list[list[object]] = []
    try:
        cost = intake_cost(engine, intake_requests)
        for mode, us in cost.items():
            rows.append([name, f"intake, archive {mode}", f"{us:.1f} µs/event", ""])
        day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
        if name == "postgresql":
            with session_factory(engine)() as session:
                archive.maintain(session, day.timestamp(), hours=10_000)  # partitions from that day on
        took = fill(engine, events, day, 10**9)
        size = size_bytes(engine, day)
        rows.append([name, f"fill {events:,} events", f"{events / took:,.0f} events/s", f"{took:.1f} s"])
        rows.append([name, "storage per 1,000,000 events", f"{size / events * 1e6 / 2**20:,.0f} MiB",
                     f"{size / events:.0f} B/event"])
        b = backfill_run(engine, tmp, day)
        rows.append([name, f"backfill: {b['scanned']:,} scanned, {b['delivered']:,} delivered",
                     f"{b['scanned'] / b['total_s']:,.0f} scanned/s",
                     f"{b['total_s']:.1f} s (task {b['task_s']:.1f}, drain {b['drain_s']:.1f})"])
        rows.append([name, "reference: read_slice of the same interval only", f"{b['read'] / b['read_only_s']:,.0f}"
                     " events/s", f"{b['read_only_s']:.1f} s"])
        took, result, runs = expire_day(engine, day)
        how = f"{result.dropped} partition dropped" if result.dropped else f"{result.deleted:,} rows in {runs} runs"
        rows.append([name, f"expire the day ({events:,} events)", f"{took * 1000:,.0f} ms", how])
        assert count_rows(engine) == 0
        if name == "postgresql":
            old = datetime(2020, 1, 1, tzinfo=UTC)  # no partition: the default one
            fill(engine, events, old, 2 * 10**9)
            took, result, runs = expire_day(engine, old)
            rows.append([name, f"reference: same day in the default partition, chunked ({events:,})",
                         f"{took * 1000:,.0f} ms", f"{result.deleted:,} rows in {runs} runs"])
    finally:
        engine.dispose()
    return rows


def isolation(name: str, events: int, live_events: int = 20) -> list[list[object]]:
    """Live latency of hook B without and during a backfill of hook A; the backfill's HTTP rate."""
    from tests.support.engine import event, http_hook, poll, postgres_database, running_engine
    from tests.support.receiver import Receiver

    def latencies(api: Any, receiver: Receiver, prefix: str) -> list[float]:
        sent: dict[str, float] = {}
        for n in range(live_events):
            one = event(n, event_type="deliv", event_id=f"{prefix}-{n}")
            sent[one["event_id"]] = time.monotonic()
            api.post("/events", json=[one]).raise_for_status()
            receiver.wait_until(lambda rs, n=n: sum(_arrived(rs, prefix)) > n, f"{prefix} {n}", timeout=60)
            time.sleep(0.25)
        return sorted(
            r.received_at - sent[e["event_id"]]
            for r in receiver.requests for e in orjson.loads(r.body) if e["event_id"].startswith(prefix)
        )

    rows: list[list[object]] = []
    crm, live = Receiver(), Receiver()
    with tempfile.TemporaryDirectory() as folder:
        database = postgres_database() if name == "postgresql" else None
        url = database.__enter__() if database else None
        try:
            extra = {"DATABASE_URL": url} if url else {}
            with common.own_redis() as (broker, _pid), running_engine(
                Path(folder), "api", "worker", "scheduler", BROKER_URL=broker, WORKER_POOL="prefork",
                WORKER_CONCURRENCY=2, **extra,
            ) as eng, eng.client() as api:
                api.timeout = httpx.Timeout(120)  # a loaded 2-core machine: the SQLite write lock queues
                start = time.time() - 1
                for r in range(events // 1000):
                    batch = [event(r * 1000 + k, event_type="open", event_id=f"old-{r}-{k}") for k in range(1000)]
                    for k, one in enumerate(batch):
                        one["event_data"]["campaign_id"] = 1 + k % 2
                    api.post("/events", json=batch).raise_for_status()
                api.post("/hooks", json={**http_hook(live.url, batch_timeout_sec=0), "actions": ["deliv"]})
                crm_hook = {**http_hook(crm.url, max_batch_size=100), "actions": ["open"],
                            "filters": {"campaigns": [1]}}
                hook_id = api.post("/hooks", json=crm_hook).json()["id"]
                time.sleep(3)  # the archived events are routed (to no hook) before measuring
                alone = latencies(api, live, "alone")
                job = api.post(f"/hooks/{hook_id}/backfill", json={"from": datetime.fromtimestamp(start, UTC)
                               .isoformat(), "to": datetime.now(UTC).isoformat()}).json()
                began = time.monotonic()
                during = latencies(api, live, "during")
                state = api.get(f"/backfills/{job['id']}").json()
                done = poll(lambda: (p := api.get(f"/backfills/{job['id']}").json())["state"] == "done" and p,
                            "backfill done", timeout=1800, every=0.2)
                took = time.monotonic() - began
        finally:
            if database:
                database.__exit__(None, None, None)
            crm.close()
            live.close()
    for label, values in (("without a backfill (reference)", alone), ("during a backfill", during)):
        rows.append([name, f"live latency of another hook {label}",
                     f"p50 {common.percentile(values, 0.5) * 1000:,.0f} ms",
                     f"p95 {common.percentile(values, 0.95) * 1000:,.0f} ms, max {values[-1] * 1000:,.0f} ms"])
    rows.append([name, f"backfill over HTTP: {done['scanned']:,} scanned, {done['delivered']:,} delivered",
                 f"{done['delivered'] / took:,.0f} delivered/s",
                 f"{took:.1f} s; still running after the live events: {state['state'] == 'running'}"])
    return rows


def _arrived(requests: list[Any], prefix: str) -> list[int]:
    return [sum(e["event_id"].startswith(prefix) for e in orjson.loads(r.body)) for r in requests]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="archived events (default 1,000,000)")
    parser.add_argument("--intake-requests", type=int, default=200, help="requests of 100 per intake mode")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--parts", default="archive,isolation")
    parser.add_argument("--isolation-events", type=int, default=100_000, help="archived events to backfill")
    args = parser.parse_args()
    parts = args.parts.split(",")
    print(common.machine())
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for name in args.databases.split(","):
            if "isolation" in parts:
                rows += isolation(name, args.isolation_events)
            if "archive" not in parts:
                continue
            if name == "sqlite":
                rows += run_database(name, f"sqlite:///{tmp / 'history.db'}", tmp, args.events, args.intake_requests)
            else:
                db = f"ah_bench_history_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{db}"')
                try:
                    rows += run_database(name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", tmp,
                                         args.events, args.intake_requests)
                finally:
                    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    print(common.table("History: archive and backfill", ["database", "what", "rate", "detail"], rows))


if __name__ == "__main__":
    main()
