"""POST /events in process: parse, validate, store and answer a 100-event request, stage by stage.

Without uvicorn, the worker and the network, so a change to the API's own path can be measured in
seconds on a loaded machine. Each stage is timed in CPU time of this process (threads included:
FastAPI runs the store in its thread pool) per event, and printed beside the reference measured in
the same run, interleaved round by round so both see the same load:

- ref `orjson.loads`: decoding the body, the least any validation can cost;
- validate: `parse_events` (decode, the event rules, the NUL and 64-bit scans);
- store: `accept_events` of already validated events (intake row, archive row and route signal,
  one commit), as the API calls it;
- request: the whole POST /api/v1/events through the ASGI app (auth, body limit, metrics, validate,
  store, the 202 body), as uvicorn would call it, one request after the other;
- concurrent: the same, CONCURRENT requests at a time (as bench/e2e_http.py's client threads keep
  in flight), which the group commit (storage/committer.py) stores in shared transactions.

Run: `.venv/bin/python bench/api_events.py [--database sqlite|postgresql] [--rounds 7]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import common
import orjson

from actionhooks.api.app import create_app
from actionhooks.events import parse_events
from actionhooks.settings import Settings
from actionhooks.storage.intake import accept_events
from actionhooks.storage.tokens import create_token
from tests.support.engine import event, postgres_database

PER_REQUEST = 100
ACCOUNT = 23
CONCURRENT = 8


def request_bodies(n: int, first: int = 0) -> list[bytes]:
    """`n` bodies of PER_REQUEST events as bench/e2e_http.py sends them (profile_id = request number)."""
    return [orjson.dumps([event(seq * PER_REQUEST + i, profile_id=str(seq)) for i in range(PER_REQUEST)])
            for seq in range(first, first + n)]


def cpu_us_per_event(run: Callable[[], None], events: int) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) / events * 1e6


def asgi_post(app: Any, token: str) -> Callable[[bytes], Any]:
    """A coroutine function sending one POST /api/v1/events to `app` as uvicorn would; asserts the 202."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json"),
               (b"authorization", f"Bearer {token}".encode())]

    async def post(body: bytes) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/v1/events", "raw_path": b"/api/v1/events", "root_path": "",
                 "query_string": b"", "headers": [*headers, (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        status = sent[0]["status"]
        if status != 202:
            raise RuntimeError(f"POST /events answered {status}: {sent[-1].get('body', b'')[:300]!r}")

    return post


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of every stage; the median is printed")
    parser.add_argument("--requests", type=int, default=100, help="requests of 100 events per stage and round")
    args = parser.parse_args()
    print(common.machine(), file=sys.stderr)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ah-api-bench-")))
        url = (stack.enter_context(postgres_database("actionhooks_apibench")) if args.database == "postgresql"
               else f"sqlite:///{folder / 'api.db'}")
        app = create_app(Settings(DATABASE_URL=url, DATA_DIR=str(folder), BROKER_URL="memory://"))
        stack.callback(app.state.engine.dispose)
        post = asgi_post(app, create_token(app.state.sessions, ACCOUNT, "ingest"))
        loop = asyncio.new_event_loop()
        stack.callback(loop.close)
        n, seq = args.requests, 0

        def fresh() -> list[bytes]:
            nonlocal seq
            seq += n
            return request_bodies(n, seq - n)

        def store(bodies: list[bytes]) -> Callable[[], None]:
            validated = [parse_events(b, max_events=PER_REQUEST) for b in bodies]

            def run() -> None:
                for events in validated:
                    with app.state.sessions() as session:
                        accept_events(session, ACCOUNT, events, supplied_ids=[], dedup_window_sec=3600,
                                      archive=app.state.settings.EVENT_ARCHIVE_HOURS > 0)
            return run

        async def requests(bodies: list[bytes]) -> None:
            for body in bodies:
                await post(body)

        async def concurrent(bodies: list[bytes]) -> None:
            for start in range(0, len(bodies), CONCURRENT):
                await asyncio.gather(*(post(body) for body in bodies[start:start + CONCURRENT]))

        stages: dict[str, Callable[[list[bytes]], Callable[[], None]]] = {
            "ref: orjson.loads": lambda bodies: lambda: [orjson.loads(b) for b in bodies] and None,
            "validate: parse_events": lambda bodies: lambda: [
                parse_events(b, max_events=PER_REQUEST, assign_ids=False) for b in bodies] and None,
            f"store: accept_events ({args.database})": store,
            f"request: POST /api/v1/events in process ({args.database})": (
                lambda bodies: lambda: loop.run_until_complete(requests(bodies))),
            f"concurrent: {CONCURRENT} requests at a time ({args.database})": (
                lambda bodies: lambda: loop.run_until_complete(concurrent(bodies))),
        }
        loop.run_until_complete(requests(fresh()))  # warm-up: token cache, compiled statements, pools
        figures: dict[str, list[float]] = {name: [] for name in stages}
        for _ in range(args.rounds):
            for name, make in stages.items():
                figures[name].append(cpu_us_per_event(make(fresh()), n * PER_REQUEST))
        ref = common.median(figures["ref: orjson.loads"])
        rows = [[name, f"{common.median(v):.2f}", f"{min(v):.2f}", f"{common.median(v) / ref:.1f}x"]
                for name, v in figures.items()]
    print(common.table(
        f"POST /events in process, requests of {PER_REQUEST} events ({args.database}, median of {args.rounds} "
        f"rounds of {n} requests; {common.machine()})",
        ["stage", "CPU-µs per event", "fastest", "of ref"], rows))


if __name__ == "__main__":
    main()
