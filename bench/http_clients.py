"""One event per request, straight to the receiver: the engine's HTTP transport beside raw clients.

With `max_batch_size` 1 every event is one request, and the HTTP client's own cost per request is
the limit of the whole engine. This posts --requests single-event bodies from --threads threads
to bench/receiver.py with each client in turn, in the same run, and prints requests/s and the
CPU-µs per request of this process (all its threads; on a shared machine the rate follows the CPU
share the process gets, so the CPU column is the one to compare):

- `wrk` (C, --threads connections): what the receiver takes, so it is known not to be the limit;
- httpx.Client, as the end-to-end benchmark's reference 1 posts (h11 framing in httpcore's pool);
- the engine's HttpTransport.send: signing, the attempt deadline, its own pool (delivery/http1.py);
- urllib3 and the standard library's http.client (one connection per thread, no pool), for scale.

Run: `.venv/bin/python bench/http_clients.py` (needs `wrk`, the Debian package).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import common
import httpx
import orjson
import urllib3
from e2e_http import delivered_bodies, receiver, reset, stats

from actionhooks.delivery.base import Batch
from actionhooks.delivery.config import HttpDelivery
from actionhooks.delivery.http import HttpTransport
from actionhooks.settings import Settings

Send = Callable[[], None]


def run(threads: int, requests: int, per_thread: Callable[[], Send]) -> tuple[float, float]:
    """`requests` sends from `threads` threads, each with the sender `per_thread` gives it;
    (requests/s, CPU-µs per request)."""
    cursor = iter(range(requests))
    lock = threading.Lock()

    def work(send: Send) -> None:
        while True:
            with lock:
                if next(cursor, None) is None:
                    return
            send()

    senders = [per_thread() for _ in range(threads)]
    before, started = os.times(), time.perf_counter()
    pool = [threading.Thread(target=work, args=(send,)) for send in senders]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds, after = time.perf_counter() - started, os.times()
    cpu = after.user + after.system - before.user - before.system
    return requests / seconds, cpu / requests * 1e6


def clients(base: str, body: bytes, events: list[dict[str, object]]) -> dict[str, Callable[[], Send]]:
    """Each client: a function giving one thread its sender (a shared client, or the thread's own connection)."""
    url = f"{base}/hook"
    headers = {"Content-Type": "application/json"}
    host, port = httpx.URL(base).host, httpx.URL(base).port or 80
    shared_httpx = httpx.Client(limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))
    engine = HttpTransport(HttpDelivery.model_validate({"type": "http", "url": url}),
                           Settings(HOOK_ALLOW_PRIVATE_TARGETS=True))
    batch = Batch(hook_id=1, batch_id="bench", attempt=1, events=events)
    pool = urllib3.HTTPConnectionPool(host, port, maxsize=16)

    def with_httpx() -> None:
        shared_httpx.post(url, content=body, headers=headers).raise_for_status()

    def with_engine() -> None:
        engine.send(batch)

    def with_urllib3() -> None:
        assert pool.request("POST", "/hook", body=body, headers=headers).status == 200

    def stdlib() -> Send:
        connection = http.client.HTTPConnection(host, port)

        def send() -> None:
            connection.request("POST", "/hook", body=body, headers=headers)
            assert connection.getresponse().read() == b"ok"
        return send

    return {
        "httpx.Client (reference 1 of e2e_http)": lambda: with_httpx,
        "engine HttpTransport.send (delivery/http1.py)": lambda: with_engine,
        "urllib3 pool": lambda: with_urllib3,
        "http.client, a connection per thread": stdlib,
    }


def wrk(url: str, body: bytes, threads: int, seconds: float) -> float:
    """Requests/s `wrk` gets from the receiver posting `body` on `threads` connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {orjson.dumps(body.decode()).decode()}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run([shutil.which("wrk") or "wrk", f"-t{min(2, threads)}", f"-c{threads}",
                              f"-d{seconds:g}s", "-s", script.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        Path(script.name).unlink()
    return next(float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="single-event requests per client and run")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(common.machine(), file=sys.stderr)
    body = delivered_bodies(1, 1)[0]
    events = orjson.loads(body)["events"]
    rates: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    with receiver() as base:
        senders = clients(base, body, events)
        for run_no in range(args.runs):
            rates.setdefault("wrk (C)", []).append(wrk(f"{base}/hook", body, args.threads, args.wrk_seconds))
            for name, per_thread in senders.items():
                reset(base)
                rate, cpu = run(args.threads, args.requests, per_thread)
                got = stats(base)["requests"]
                assert got == args.requests, f"{name}: the receiver saw {got} of {args.requests} requests"
                rates.setdefault(name, []).append(rate)
                cpus.setdefault(name, []).append(cpu)
                print(f"  run {run_no + 1} {name}: {rate:,.0f}/s, {cpu:,.0f} CPU-µs per request "
                      f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    reference = common.median(rates["httpx.Client (reference 1 of e2e_http)"])
    rows = [[name, common.median(values), f"{common.median(values) / reference:.1f}x",
             common.median(cpus[name]) if name in cpus else ""] for name, values in rates.items()]
    print(common.table(
        f"One event per request straight to the receiver ({args.threads} threads, {args.requests:,} requests "
        f"per client, median of {args.runs})", ["client", "requests/s", "of httpx", "CPU-µs per request"], rows))


if __name__ == "__main__":
    main()
