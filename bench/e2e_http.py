"""End to end over HTTP: POST /api/v1/events in requests of 100 -> one hook -> batches -> receiver.

The hook is what a user configures: a campaign filter and two template values in custom_data
(`{{profile_id}}`, which carries the benchmark's sequence number, and `{{uuid}}`); batches of
--max-batch events, cut after --batch-timeout seconds. Prints, per engine configuration, sustained
events/s at full load and p50/p99 latency (from the API's 202 to the receiver) at full load and at
a lighter paced load (--rate events/s, or 20% of the full-load rate), next to two references
measured in the same run: (1) the same batches posted straight to the receiver with the same
client (httpx, the same --clients threads) — the limit; (2) one Celery task per event that POSTs it
with httpx — what a user would write instead. Every figure is the median of --runs runs.

Run: `.venv/bin/python bench/e2e_http.py` (PostgreSQL, Redis on 127.0.0.1; see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import httpx
import orjson

from tests.support.engine import Engine, event, free_port, poll, postgres_database

BATCH = 100  # events per POST /events request
CLIENT_THREADS = 8
CONFIGS = {
    "pg+redis": {"database": "postgresql", "broker": "redis"},
    "sqlite+redis": {"database": "sqlite", "broker": "redis"},
    "sqlite+embedded": {"database": "sqlite", "broker": "embedded"},
}


@dataclass
class Result:
    events: int
    delivered: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


# receiver -------------------------------------------------------------------------------------
@contextmanager
def receiver() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("receiver.py")), str(port)],
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def stats(base: str) -> dict[str, Any]:
    return orjson.loads(httpx.get(f"{base}/stats", timeout=30).content)


def reset(base: str) -> None:
    httpx.get(f"{base}/reset", timeout=10)


# load -----------------------------------------------------------------------------------------
def bodies(requests: int, first_seq: int, per_request: int = BATCH) -> list[bytes]:
    """Request bodies for the engine: `per_request` events each, every event carrying its request's
    sequence number as its profile_id (the hook renders it into custom_data.bench_seq)."""
    return [orjson.dumps([event(seq * per_request + i, profile_id=str(seq)) for i in range(per_request)])
            for seq in range(first_seq, first_seq + requests)]


def delivered_bodies(events: int, per_request: int) -> list[bytes]:
    """What the engine delivers for `events` events in batches of `per_request`: each event with the
    custom_data the hook renders (reference 1 posts these straight to the receiver)."""
    out = []
    for first in range(0, events, per_request):
        batch = [event(n, custom_data={"bench_seq": str(n // BATCH), "event_uuid": str(uuid.uuid4())})
                 for n in range(first, min(events, first + per_request))]
        out.append(orjson.dumps({"events": batch}))
    return out


def post_all(url: str, payloads: list[bytes], first_seq: int, headers: dict[str, str], *,
             rate: float | None = None, threads: int = CLIENT_THREADS, per_request: int = BATCH
             ) -> tuple[dict[int, float], float, float]:
    """POST every payload (`per_request` events each) from `threads` threads sharing one keep-alive
    client, optionally paced to `rate` events/s; returns ({seq: time of the 2xx}, start, end)."""
    acked: dict[int, float] = {}
    lock = threading.Lock()
    cursor = iter(range(len(payloads)))
    client = httpx.Client(headers={"Content-Type": "application/json", **headers}, timeout=60,
                          limits=httpx.Limits(max_connections=threads, max_keepalive_connections=threads))
    start = time.time()

    def work() -> None:
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            if rate:
                wait = start + i * per_request / rate - time.time()
                if wait > 0:
                    time.sleep(wait)
            reply = client.post(url, content=payloads[i])
            if reply.status_code >= 300:
                raise RuntimeError(f"{url} answered {reply.status_code}: {reply.text[:300]}")
            acked[first_seq + i] = time.time()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    client.close()
    return acked, start, time.time()


def measure(receiver_base: str, expected: int, acked: dict[int, float], start: float,
            timeout: float) -> Result:
    """Wait until `expected` events arrived (or the deadline); throughput and latency from the receiver's log."""
    deadline = time.monotonic() + timeout
    seen = stats(receiver_base)
    while seen["events"] < expected and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = stats(receiver_base)
    latencies = sorted(max(0.0, t - acked.get(s, t)) * 1000 for s, t in zip(seen["seqs"], seen["times"], strict=True))
    return Result(expected, seen["events"], (seen["last"] - start) if seen["events"] else 0.0,
                  common.percentile(latencies, 0.5), common.percentile(latencies, 0.99))


# scenarios ------------------------------------------------------------------------------------
def reference_direct(base: str, events: int, per_request: int, threads: int) -> Result:
    reset(base)
    payloads = delivered_bodies(events, per_request)
    acked, start, _ = post_all(f"{base}/hook", payloads, 0, {}, threads=threads, per_request=per_request)
    return measure(base, events, acked, start, 120)


def reference_celery(base: str, events: int, broker: str) -> Result:
    """One Celery task per event posting it with httpx; the worker: threads pool, 8 threads."""
    from celery import Celery

    env = {**os.environ, "BENCH_BROKER": broker, "BENCH_URL": f"{base}/hook",
           "PYTHONPATH": str(common.ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.naive_celery", "worker", "--pool=threads", "-c", "8",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
        env=env, cwd=common.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        app = Celery("naive", broker=broker, set_as_current=False)
        reset(base)
        app.send_task("naive.post_event", args=[event(0, custom_data={"bench_seq": 0})])  # warm up
        poll(lambda: stats(base)["events"] >= 1, "the naive worker to start", timeout=60)
        reset(base)
        start = time.time()
        acked: dict[int, float] = {}
        for i in range(events):
            app.send_task("naive.post_event", args=[event(i, custom_data={"bench_seq": i})])
            acked[i] = time.time()
        return measure(base, events, acked, start, 120)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)


def watched(engine: Engine, redis_pid: int) -> dict[str, int]:
    """The processes whose CPU the benchmark accounts: the engine's roles, PostgreSQL (all of its
    backends, other users' included) and the benchmark's own Redis."""
    procs = {role: proc.pid for role, proc in engine.procs.items()}
    postgres = common.pids_named("postgres")
    for pid in postgres:  # the postmaster: the one postgres process whose parent is not postgres
        if common.parent(pid) not in postgres:
            procs["postgres"] = pid
    procs["redis"] = redis_pid
    return procs


def engine_runs(base: str, name: str, args: argparse.Namespace, folder: Path, redis: tuple[str, int]
                ) -> dict[str, list[Result]]:
    config = CONFIGS[name]
    with ExitStack() as stack:
        overrides: dict[str, Any] = {"WORKER_POOL": args.pool, "WORKER_CONCURRENCY": args.concurrency,
                                     "LOG_LEVEL": "INFO", "SCHEDULER_TICK_SEC": 1.0}
        if config["database"] == "postgresql":
            overrides["DATABASE_URL"] = stack.enter_context(postgres_database("actionhooks_bench"))
        if config["broker"] == "redis":
            overrides["BROKER_URL"] = redis[0]
        else:
            overrides["BROKER_URL"] = ""
        engine = Engine(folder, **overrides)
        stack.callback(engine.stop)
        try:
            engine.start("api", "worker", "scheduler")
        except AssertionError:
            for role, log in engine.logs.items():
                print(f"--- {role} log:\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        with engine.client() as admin:
            hook = {"name": "bench", "actions": ["click"], "filters": {"campaigns": [973]},
                    "custom_data": {"values": {"bench_seq": "{{profile_id}}", "event_uuid": "{{uuid}}"}},
                    "delivery": {"type": "http", "url": f"{base}/hook", "max_batch_size": args.max_batch,
                                 "batch_timeout_sec": args.batch_timeout}}
            admin.post("/hooks", json=hook).raise_for_status()
        url = f"{engine.base_url}/api/v1/events"
        headers = {"Authorization": f"Bearer {engine.token(23, 'ingest')}"}
        seq = 0
        reset(base)  # warm-up: connections, hook cache, first compilation
        warm = bodies(10, seq)
        acked, start, _ = post_all(url, warm, seq, headers, threads=args.clients)
        measure(base, 10 * BATCH, acked, start, 60)
        seq += 10
        out: dict[str, list[Result]] = {"full": [], "paced": []}
        for run in range(args.runs):
            reset(base)
            payloads = bodies(args.events // BATCH, seq)
            with (common.profiled(engine.procs if run == 0 else {}, args.profile, prefix=name, gil=args.gil),
                  common.cpu_per_event(watched(engine, redis[1]), lambda: args.events, f"{name} full")):
                acked, start, _ = post_all(url, payloads, seq, headers, threads=args.clients)
                result = measure(base, args.events, acked, start, 180)
            seq += len(payloads)
            out["full"].append(result)
            print(f"  {config} full: {out['full'][-1]}", file=sys.stderr, flush=True)
        light = args.rate or 0.2 * common.median([r.rate for r in out["full"]])
        for _ in range(args.runs):
            reset(base)
            n = max(BATCH, int(light * args.light_seconds) // BATCH * BATCH)
            payloads = bodies(n // BATCH, seq)
            acked, start, _ = post_all(url, payloads, seq, headers, rate=light, threads=args.clients)
            seq += len(payloads)
            out["paced"].append(measure(base, n, acked, start, 180))
            print(f"  {config} paced ({light:,.0f}/s): {out['paced'][-1]}", file=sys.stderr, flush=True)
        log = engine.logs["worker"].read_text()
        print(f"  {name} worker tasks: route {log.count('actionhooks.route[') // 2:,}, "
              f"drain {log.count('actionhooks.drain[') // 2:,}", file=sys.stderr, flush=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=100_000, help="events per full-load run")
    parser.add_argument("--light-seconds", type=float, default=8.0, help="length of a paced run")
    parser.add_argument("--rate", type=float, help="events/s of the paced runs (default: 20%% of the full-load rate)")
    parser.add_argument("--clients", type=int, default=CLIENT_THREADS, help="client threads posting requests")
    parser.add_argument("--max-batch", type=int, default=BATCH, help="the hook's max_batch_size")
    parser.add_argument("--naive-events", type=int, default=3000)
    parser.add_argument("--batch-timeout", type=float, default=0.2, help="the hook's batch_timeout_sec")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--profile", type=Path, help="py-spy the API and worker in the first full-load run; "
                        "writes flame graphs and prints their top frames into this folder")
    parser.add_argument("--gil", action="store_true", help="with --profile: sample only the thread holding the GIL "
                        "(Python CPU only, not threads waiting for the GIL or a core)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"any of {', '.join(CONFIGS)}")
    args = parser.parse_args()
    print(common.machine(), file=sys.stderr)
    rows: list[list[object]] = []
    with receiver() as base, tempfile.TemporaryDirectory(prefix="ah-bench-") as tmp:
        direct = [reference_direct(base, args.events, args.max_batch, args.clients) for _ in range(args.runs)]
        with common.own_redis() as (broker, _):
            naive = [reference_celery(base, args.naive_events, broker) for _ in range(args.runs)]
        ref1 = common.median([r.rate for r in direct])
        ref2 = common.median([r.rate for r in naive])
        for name in args.configs.split(","):
            folder = Path(tmp) / name
            folder.mkdir()
            with common.own_redis() as redis:  # a fresh one: nothing left over from the previous engine
                results = engine_runs(base, name, args, folder, redis)
            full, light = results["full"], results["paced"]
            rate = common.median([r.rate for r in full])
            rows.append([f"engine {name}", rate, f"{rate / ref1:.0%}", f"{rate / ref2:.1f}x",
                         common.median([r.p50_ms for r in full]), common.median([r.p99_ms for r in full]),
                         common.median([r.p50_ms for r in light]), common.median([r.p99_ms for r in light]),
                         f"{common.median([r.delivered / r.events for r in full + light]):.0%}"])
        rows.append(["ref 1: httpx straight to receiver", ref1, "100%", f"{ref1 / ref2:.1f}x", "", "", "", "", ""])
        rows.append(["ref 2: Celery task per event + httpx (Redis)", ref2, f"{ref2 / ref1:.1%}", "1.0x",
                     common.median([r.p50_ms for r in naive]), common.median([r.p99_ms for r in naive]), "", "", ""])
    print(common.table(
        f"End to end over HTTP (requests of {BATCH} from {args.clients} clients, batches of {args.max_batch}, "
        f"batch_timeout_sec {args.batch_timeout}, worker {args.pool} x{args.concurrency}, median of {args.runs})",
        ["path", "events/s", "of ref 1", "of ref 2", "p50 ms full", "p99 ms full", "p50 ms paced", "p99 ms paced",
         "delivered"], rows))


if __name__ == "__main__":
    main()
