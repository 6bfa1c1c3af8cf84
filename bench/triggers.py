"""Trigger round trip: what a route/drain trigger costs to send and how long until a worker starts it.

Sends --triggers probe tasks, paced at --rate per second (the engine sends a few dozen per second:
one route trigger per burst of requests, one drain trigger per window), through the engine's own
Celery app (broker/celery_app.py) to a real worker (prefork x2, as `actionhooks run`); the task
notes when it started. Prints, per broker, the send's wall time and CPU time in the sender, the
pick-up delay (send -> task start), the CPU the worker spent per trigger and while idle (polling), for the
embedded broker beside a private Redis and kombu's SQLAlchemy transport (the embedded broker
before broker/embedded.py, at kombu's default polling) in the same run.

Run: `.venv/bin/python bench/triggers.py` (needs `redis-server`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

from tests.support.engine import poll


def one_broker(name: str, broker: str, args: argparse.Namespace, folder: Path) -> list[object]:
    env = {**os.environ, "BENCH_BROKER": broker, "BENCH_DIR": str(folder), "PYTHONPATH": str(common.ROOT)}
    os.environ.update({k: env[k] for k in ("BENCH_BROKER", "BENCH_DIR")})
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.trigger_app", "worker", "--pool=prefork", "-c", "2",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--prefetch-multiplier=1"],
        env=env, cwd=common.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = folder / "probe.txt"
    try:
        import importlib

        from bench import trigger_app

        app = importlib.reload(trigger_app).app  # this broker's settings
        app.send_task("bench.probe", args=[time.time()])  # warm up: connections, queue declared
        poll(lambda: out.exists() and out.read_text().count("\n") >= 1, "the worker to start", timeout=60)
        out.unlink()
        idle_from = common.cpu_seconds(worker.pid)
        time.sleep(args.idle_seconds)
        idle = (common.cpu_seconds(worker.pid) - idle_from) / args.idle_seconds * 100
        sends: list[float] = []
        worker_cpu = common.cpu_seconds(worker.pid)
        own = time.process_time()
        start = time.monotonic()
        for i in range(args.triggers):
            wait = start + i / args.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            t = time.perf_counter()
            app.send_task("bench.probe", args=[time.time()])
            sends.append((time.perf_counter() - t) * 1000)
        send_cpu = (time.process_time() - own) / args.triggers * 1e6
        poll(lambda: out.exists() and out.read_text().count("\n") >= args.triggers, "every probe to run", timeout=120)
        worker_us = (common.cpu_seconds(worker.pid) - worker_cpu) / args.triggers * 1e6
        delays = sorted(float(line) * 1000 for line in out.read_text().split())
        sends.sort()
        row: list[object] = [name, common.percentile(sends, 0.5), common.percentile(sends, 0.99), send_cpu,
                             common.percentile(delays, 0.5), common.percentile(delays, 0.99), worker_us, idle]
        print(f"  {row}", file=sys.stderr, flush=True)
        return row
    finally:
        # The main process only: billiard's pool hangs at shutdown when its children die holding
        # the queue lock, which SIGTERM to the whole group can cause (the engine guards against
        # that in worker/tasks.py; this probe app does not).
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="triggers per second")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="worker CPU measured idle this long")
    args = parser.parse_args()
    print(common.machine(), file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ah-triggers-") as tmp, common.own_redis() as (redis_url, _):
        for run in range(args.runs):
            sqla = f"sqla+sqlite:///{Path(tmp) / f'{run}-kombu.sqlite'}"
            for name, broker in (("embedded (broker/embedded.py)", ""), ("Redis", redis_url),
                                 ("kombu's SQLAlchemy transport (embedded before)", sqla)):
                folder = Path(tmp) / f"{run}-{name.split()[0].strip(chr(39)).lower()}"
                folder.mkdir()
                rows.append(one_broker(name, broker, args, folder))
    print(common.table(
        f"Trigger round trip ({args.triggers} triggers at {args.rate:g}/s, worker prefork x2)",
        ["broker", "send ms p50", "send ms p99", "send CPU-µs", "pick-up ms p50", "pick-up ms p99",
         "worker CPU-µs per trigger", "idle worker, % of a core"], rows))


if __name__ == "__main__":
    main()
