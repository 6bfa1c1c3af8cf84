"""Pixel capture end to end: hits answered by the engine and delivered to a receiver, beside a raw server.

In one run, with `wrk` as the load generator (it reaches ~80,000 req/s on a raw server here, so it is
not the limit):
  1. reference: a raw asyncio server answering the same 1x1 GIF (what the machine and client allow);
  2. the engine on its embedded defaults (`actionhooks run`: SQLite, embedded broker, prefork worker
     with 2 processes), one pixel source (event_types ["open"]) and one HTTP hook to a raw receiver
     (batches of 100, a 1 s batch window so the last partial batch does not pad the figure):
     full load for --seconds, then wait until every captured hit is delivered -> hits/s answered,
     hits/s delivered (captured hits / time from the first request to the last delivery), p99 answer;
  3. the same at a paced rate (--half-rate, default 2,500 hits/s: half the 5,000/s target): p99 answer;
  and for both, the CPU time each role (API, worker, scheduler) spent per hit.

Every accepted hit is durable (group commit) before its GIF is sent. Needs `wrk`
(`apt-get install -y wrk`). Run: `.venv/bin/python bench/capture.py` (prints a Markdown table).
The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import common
import httpx
import orjson
from receiver import read_request

from tests.support.engine import Engine, free_port, poll

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
QUERY = "?profile_id=p-1&campaign_id=973&message_id=17&utm_source=mail"


# the two raw servers (run in their own processes) ---------------------------------------------
async def _serve(port: int, handle_body: object) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head, body = await read_request(reader)
                reply, content_type = handle_body(head, body)  # type: ignore[operator]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-store\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (content_type, len(reply), reply))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024, limit=1 << 24)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def gif_server(port: int) -> None:
    asyncio.run(_serve(port, lambda head, body: (GIF, b"image/gif")))


def receiver(port: int) -> None:
    """Counts delivered events (no JSON parsing: one `"event_type"` per event) and when the last came."""
    seen = {"events": 0, "first": 0.0, "last": 0.0}

    def handle(head: bytes, body: bytes) -> tuple[bytes, bytes]:
        if head.startswith(b"GET /stats"):
            return orjson.dumps(seen), b"application/json"
        if head.startswith(b"GET /reset"):
            seen.update(events=0, first=0.0, last=0.0)
            return b"{}", b"application/json"
        now = time.time()
        seen["first"] = seen["first"] or now
        seen["last"] = now
        seen["events"] += body.count(b'"event_type"')
        return b"ok", b"text/plain"

    asyncio.run(_serve(port, handle))


@contextmanager
def subprocess_server(role: str) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, role, str(port)], stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


# wrk ------------------------------------------------------------------------------------------
# Open-loop pacing (wrk has no -R): each wrk thread keeps a schedule of send times `interval` ms apart on
# the monotonic clock (LuaJIT's ffi) and delays each request until its slot, whatever the answers took;
# behind schedule it sends at once. A fixed delay after each answer (closed loop) let slow answers lower
# the offered rate: at 50 connections x 20 ms the engine was offered ~1,900/s, not 2,500/s.
PACED = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} ah_timespec;
int clock_gettime(int clk_id, ah_timespec *tp);
]]
local ts = ffi.new("ah_timespec")
local interval = {interval}
local next_at = nil
function delay()
  ffi.C.clock_gettime(1, ts)
  local now = tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  if next_at == nil then next_at = now end
  next_at = next_at + interval
  local wait = next_at - now
  if wait < 0 then return 0 end
  return wait
end
"""
WRK_THREADS = 2


def wrk(url: str, seconds: float, connections: int, rate: float | None = None) -> dict[str, float]:
    """Run wrk; requests/s, total requests, p50/p99 latency (ms), non-2xx count. `rate` paces it open-loop
    (PACED): requests are offered at that rate as long as `connections` suffice to carry it."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    args = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
            "-H", f"User-Agent: {AGENT}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if rate:
            script.write(PACED.format(interval=WRK_THREADS * 1000 / rate))
    if rate:
        args += ["-s", script.name]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"\n\s+50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\n\s+99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": float(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


# in process: the API's capture path without HTTP --------------------------------------------
async def _asgi_get(app: object, path: str, query: bytes) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"user-agent", AGENT.encode()), (b"accept", b"*/*")],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080)}

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        pass

    await app(scope, receive, send)  # type: ignore[operator]


async def _raw_gif_app(scope: dict[str, object], receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                "headers": [(b"content-type", b"image/gif"), (b"content-length", b"42")]})
    await send({"type": "http.response.body", "body": GIF})  # type: ignore[operator]


def in_process(hits_per_task: int, tasks: int) -> dict[str, float]:
    """CPU-µs per pixel hit of the API application called directly (ASGI, no server, no socket) by
    `tasks` concurrent callers on SQLite, the committer's writer thread included; beside an ASGI app
    that only answers the GIF, called the same way. Batches are as large as the callers make them
    (`tasks`), whatever else runs on the machine, so the figure compares code across runs."""
    import uvloop

    from actionhooks.api.app import create_app
    from actionhooks.settings.loader import load_settings
    from actionhooks.storage.migrate import prepare_storage
    from actionhooks.storage.tokens import create_token

    async def measure(app: object, path: str) -> float:
        async def caller() -> None:
            for _ in range(hits_per_task):
                await _asgi_get(app, path, QUERY[1:].encode())

        for _ in range(200):
            await _asgi_get(app, path, QUERY[1:].encode())  # warm: caches, the SQLite file
        start = time.process_time()
        await asyncio.gather(*(caller() for _ in range(tasks)))
        return (time.process_time() - start) / (hits_per_task * tasks) * 1e6

    async def run(folder: str) -> dict[str, float]:
        config = Path(folder) / "main.json"
        config.write_text(orjson.dumps({"DATA_DIR": f"{folder}/data", "LOG_LEVEL": "WARNING"}).decode())
        settings = load_settings(config, environ={})
        prepare_storage(settings)
        app = create_app(settings)
        token = create_token(app.state.sessions, 1, "admin", "bench")
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bench") as client:
                reply = await client.post("/api/v1/sources", headers={"authorization": f"Bearer {token}"},
                                          json={"name": "bench", "kind": "pixel", "event_types": ["open"]})
            path = f"/t/{reply.json()['key']}/p.gif"
            return {"raw": await measure(_raw_gif_app, path), "api": await measure(app, path)}

    with tempfile.TemporaryDirectory() as folder, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(folder))


# the engine -----------------------------------------------------------------------------------
def captured(engine: Engine) -> float:
    text = httpx.get(f"{engine.base_url}/metrics", timeout=30).text
    line = next((x for x in text.splitlines() if x.startswith('actionhooks_capture_events_total{kind="pixel"}')), "")
    return float(line.split()[-1]) if line else 0.0


def healthy(engine: Engine) -> bool:
    try:
        return httpx.get(f"{engine.base_url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def stats(port: int) -> dict[str, float]:
    return orjson.loads(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=30).content)


def role_pids(engine: Engine) -> dict[str, int]:
    """The api, worker and scheduler processes `actionhooks run` started (their CPU is counted per role)."""
    run = engine.procs["run"].pid
    roles = {}
    for pid in common.tree_pids(run):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        if common.parent(pid) == run and args[-1].decode() in ("api", "worker", "scheduler"):
            roles[args[-1].decode()] = pid
    return roles


def _sys_seconds(pid: int) -> float:
    """The kernel's share of common.cpu_seconds (system calls: sockets, the loop's polling, lock waits)."""
    total = 0
    for p in common.tree_pids(pid):
        try:
            total += int(Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()[12])
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def engine_run(engine: Engine, url: str, receiver_port: int, *, seconds: float, connections: int,
               rate: float | None, profile: Path | None = None, name: str = "full") -> dict[str, float]:
    """One wrk run; also the CPU-µs each role spent per captured hit until the last one was delivered
    (the figure a loaded machine distorts least: it does not count time spent waiting for a core)."""
    httpx.get(f"http://127.0.0.1:{receiver_port}/reset", timeout=10)
    roles = role_pids(engine)
    cpu = {role: common.cpu_seconds(pid) for role, pid in roles.items()}
    kernel = {role: _sys_seconds(pid) for role, pid in roles.items()}
    before = captured(engine)
    start = time.time()
    spied = {role: SimpleNamespace(pid=pid) for role, pid in roles.items() if role != "scheduler"}
    with common.profiled(spied, profile, prefix=f"capture-{name}", gil=True):  # type: ignore[arg-type]
        load = wrk(url, seconds, connections, rate)
    hits = 0.0

    def all_delivered() -> bool:
        # Re-read: the requests wrk left in flight when it stopped (up to one per connection) are still
        # committed and counted after it returns, and delivered like the others.
        nonlocal hits
        hits = captured(engine) - before
        return stats(receiver_port)["events"] >= hits

    poll(all_delivered, "every captured hit delivered", timeout=600, every=0.5)
    seen = stats(receiver_port)
    per_hit = {f"cpu_us_{role}": (common.cpu_seconds(pid) - cpu[role]) / max(hits, 1) * 1e6
               for role, pid in roles.items()}
    per_hit |= {f"sys_us_{role}": (_sys_seconds(pid) - kernel[role]) / max(hits, 1) * 1e6
                for role, pid in roles.items()}
    return load | per_hit | {"captured": hits, "delivered": seen["events"],
                             "delivered_rps": seen["events"] / (seen["last"] - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--half-rate", type=float, default=2500)
    parser.add_argument("--profile", type=Path, help="py-spy the API and worker during both engine runs; "
                        "writes capture-<run>-<role>.raw/.txt there and prints the top frames")
    parser.add_argument("--skip-reference", action="store_true", help="engine only (profiling; no figures to report)")
    parser.add_argument("--in-process", action="store_true", help="only the CPU-µs per hit of the capture path "
                        "called in process (no HTTP, no worker), beside a bare ASGI GIF app")
    args = parser.parse_args()
    machine = common.machine()
    if args.in_process:
        for tasks in (64, 8):
            cost = in_process(200, tasks)
            print(f"In process, {tasks} concurrent callers: CPU-µs per hit: bare ASGI GIF app {cost['raw']:.0f}, "
                  f"API capture path {cost['api']:.0f} (committer included); {common.machine()}")
        return
    no_run = {"rps": 0.0, "p50": 0.0, "p99": 0.0}
    reference, reference_paced = no_run, no_run
    with subprocess_server("gif-server") as port:
        if not args.skip_reference:
            reference = wrk(f"http://127.0.0.1:{port}/t/x/p.gif{QUERY}", args.seconds, args.connections)
            reference_paced = wrk(f"http://127.0.0.1:{port}/t/x/p.gif{QUERY}", args.seconds, 50, args.half_rate)
    print(f"reference: {reference}, paced {reference_paced}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder, subprocess_server("receiver") as receiver_port:
        engine = Engine(Path(folder), WORKER_POOL="prefork", WORKER_CONCURRENCY=2, SCHEDULER_TICK_SEC=1.0,
                        HOOK_RETRY_PERIOD_SEC=[15])
        engine.config.pop("DATABASE_URL")  # the embedded defaults: SQLite under DATA_DIR, embedded broker
        engine.config_path.write_text(orjson.dumps(engine.config).decode())
        try:
            try:
                engine.start("run")
            except AssertionError:  # not ready in 30 s: on a loaded machine `run` may take longer to start
                poll(lambda: engine.procs["run"].poll() is None and healthy(engine), "the engine", timeout=120)
            with engine.client() as admin:
                source = admin.post("/sources", json={"name": "bench", "kind": "pixel", "event_types": ["open"]}).json()
                admin.post("/hooks", json={"name": "bench", "actions": ["open"], "delivery": {
                    "type": "http", "url": f"http://127.0.0.1:{receiver_port}/hook", "batch_timeout_sec": 1,
                }}).raise_for_status()
            url = f"{engine.base_url}/t/{source['key']}/p.gif{QUERY}"
            wrk(url, 3, 8)  # warm up (imports, caches, SQLite file growth), then let it drain
            warm = captured(engine)
            poll(lambda: stats(receiver_port)["events"] >= warm, "the warm-up delivered", timeout=300, every=0.5)
            full = engine_run(engine, url, receiver_port, seconds=args.seconds, connections=args.connections, rate=None,
                              profile=args.profile, name="full")
            print(f"full: {full}", file=sys.stderr)
            paced = engine_run(engine, url, receiver_port, seconds=args.seconds, connections=50, rate=args.half_rate,
                               profile=args.profile, name="paced")
            print(f"paced: {paced}", file=sys.stderr)
        finally:
            engine.stop()
    rows = [
        ["raw asyncio GIF server (reference)", f"{reference['rps']:,.0f}", "-", f"{reference['p50']:.1f}",
         f"{reference['p99']:.1f}", f"{reference_paced['rps']:,.0f}", f"{reference_paced['p99']:.1f}"],
        ["engine, embedded defaults", f"{full['rps']:,.0f}", f"{full['delivered_rps']:,.0f}", f"{full['p50']:.1f}",
         f"{full['p99']:.1f}", f"{paced['rps']:,.0f}", f"{paced['p99']:.1f}"],
    ]
    print(f"Machine: {machine}; wrk -t2 on the same 2 cores\n")
    print(common.table(
        f"Pixel capture, wrk {args.connections} connections x {args.seconds:.0f} s; paced run: 50 connections "
        f"offered (open loop) {args.half_rate:,.0f}/s",
        ["server", "answered hits/s", "delivered hits/s", "p50 ms", "p99 ms", "paced hits/s", "paced p99 ms"],
        rows))
    for name, run in (("full load", full), ("paced", paced)):
        print(f"CPU-µs per captured hit, {name} (until delivered): API {run['cpu_us_api']:.0f}, "
              f"worker {run['cpu_us_worker']:.0f}, scheduler {run['cpu_us_scheduler']:.0f} (of which in the kernel: "
              f"API {run['sys_us_api']:.0f}, worker {run['sys_us_worker']:.0f})")
    non2xx = full["non2xx"] + paced["non2xx"]
    print(f"\nEvery captured hit delivered: full {full['delivered']:.0f}/{full['captured']:.0f}, "
          f"paced {paced['delivered']:.0f}/{paced['captured']:.0f}; non-2xx answers: {non2xx:.0f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("gif-server", "receiver"):
        {"gif-server": gif_server, "receiver": receiver}[sys.argv[1]](int(sys.argv[2]))
    else:
        main()
