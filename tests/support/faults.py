"""Fault-test helpers: count what a receiver took, settle the engine, break Redis and RabbitMQ on purpose.

The accounting behind every fault test: each event carries its own `event_id`; an event counts as
delivered when a receiver *answered* a request carrying it with 2xx (whether or not the answer
reached the engine: a receiver that processed a batch whose answer was lost has the event, and the
engine's retry then makes a duplicate). The claim under test is `lost == []`: every id the API
acknowledged with 202 was delivered or sits in its hook's failed list.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from sqlalchemy import func, select

from actionhooks.storage.db import make_engine
from actionhooks.storage.tables import Delivery, Intake, Outbox
from actionhooks.worker.runtime import HTTP_SEND_THREADS, SENDS_PER_THREAD
from tests.support.engine import Engine, event, free_port, poll
from tests.support.receiver import Received, Receiver, Reply


def claimable_batches(drains: int) -> int:
    """The most batches `drains` concurrent drains hold claimed at once (an HTTP hook's batches of more than
    a few events): what a kill or a lost broker may make arrive twice."""
    return drains * HTTP_SEND_THREADS * SENDS_PER_THREAD


# A Reply with this status makes CountingReceiver close the connection without answering.
DROP = 0


class _Dropped(Exception):
    """Raised inside the request handler so the server closes the connection without a response."""


class CountingReceiver(Receiver):
    """A Receiver that remembers the answer each request got and can drop connections (Reply(status=DROP))."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.answered: list[tuple[Received, Reply]] = []
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]

    def _record(self, request: Received) -> Reply:
        with self._changed:  # an RLock: Receiver._record takes it again
            reply = super()._record(request)
            self.answered.append((request, reply))
        if reply.status == DROP:
            raise _Dropped
        return reply

    def delivered_ids(self) -> list[str]:
        """event_ids of every request answered 2xx, one entry per copy received."""
        with self._changed:
            answered = list(self.answered)
        return [e["event_id"] for r, reply in answered if 200 <= reply.status < 300 for e in _events(r.body)]


@contextmanager
def counting_receiver(delay: float) -> Iterator[CountingReceiver]:
    """A CountingReceiver whose every answer takes `delay` seconds, so a kill or restart finds requests in
    flight; closed afterwards."""
    server = CountingReceiver()
    server.default = Reply(delay=delay)
    try:
        yield server
    finally:
        server.close()


def _events(body: bytes) -> list[dict[str, Any]]:
    """The events of a request body; none when the body was cut short (a sender killed mid-request)."""
    try:
        events: list[dict[str, Any]] = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    return events


@dataclass(frozen=True)
class Tally:
    """What happened to the acknowledged events of one fault test."""

    sent: int
    delivered: int  # distinct event_ids received at least once
    duplicates: int  # copies beyond the first
    failed_listed: int  # distinct event_ids in the hook's failed list and not delivered
    lost: list[str]  # acknowledged, never delivered, not in the failed list: must stay empty

    def __str__(self) -> str:
        return (
            f"sent={self.sent} delivered={self.delivered} duplicates={self.duplicates} "
            f"failed_listed={self.failed_listed} lost={len(self.lost)}"
        )


def tally(sent: Iterable[str], delivered: Iterable[str], failed: Iterable[str]) -> Tally:
    sent_ids = set(sent)
    copies = Counter(i for i in delivered if i in sent_ids)
    got = set(copies)
    in_failed = set(failed) - got
    return Tally(
        sent=len(sent_ids),
        delivered=len(got),
        duplicates=sum(copies.values()) - len(got),
        failed_listed=len(in_failed & sent_ids),
        lost=sorted(sent_ids - got - in_failed),
    )


def report(name: str, result: Tally) -> None:
    """Print the figures (run pytest with -s to see them; the README quotes them)."""
    print(f"\n[fault] {name}: {result}")


def post_events(api: httpx.Client, ids: list[str], per_request: int = 100) -> list[str]:
    """POST events with these event_ids in requests of `per_request`; returns the ids acknowledged with 202."""
    acknowledged: list[str] = []
    for start in range(0, len(ids), per_request):
        chunk = ids[start : start + per_request]
        answer = api.post("/events", json=[event(start + i, event_id=eid) for i, eid in enumerate(chunk)])
        if answer.status_code == 202:
            acknowledged.extend(chunk)
    return acknowledged


def failed_ids(api: httpx.Client, hook_id: int) -> list[str]:
    """event_ids in the hook's failed list (GET /hooks/{id}/failed)."""
    answer = api.get(f"/hooks/{hook_id}/failed", params={"limit": 1000})
    answer.raise_for_status()
    return [e["event_id"] for batch in answer.json() for e in batch["events"]]


def outstanding(engine: Engine) -> int:
    """Events the engine still has to route or deliver: intake, open windows and pending batches.

    Read from its database, because "nothing more will arrive" is what settling a fault test needs.
    """
    db = make_engine(engine.config["DATABASE_URL"])
    try:
        with db.connect() as conn:
            total = 0
            for table, n in ((Intake, Intake.n_events), (Outbox, Outbox.n_events)):
                total += conn.execute(select(func.coalesce(func.sum(n), 0)).select_from(table)).scalar_one()
            total += conn.execute(
                select(func.coalesce(func.sum(Delivery.n_events), 0)).where(Delivery.status == "pending")
            ).scalar_one()
            return int(total)
    finally:
        db.dispose()


def settle(
    engine: Engine,
    api: httpx.Client,
    hook_id: int,
    sent: list[str],
    *,
    delivered: Callable[[], list[str]],
    timeout: float,
) -> Tally:
    """Wait until the engine has nothing left for the hook's events, then count.

    `delivered` returns the delivered event_ids, one entry per copy.
    """

    def done() -> Tally | None:
        if outstanding(engine):
            return None
        return tally(sent, delivered(), failed_ids(api, hook_id))

    return poll(done, "the engine to finish every acknowledged event", timeout=timeout, every=0.25)


@dataclass
class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, keeping nothing on disk.

    Killing and restarting it loses every trigger it held: the engine must not lose an event for it.
    """

    folder: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            poll(answers, f"redis-server on port {self.port}", timeout=10)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever it held (queued triggers, unacked ones) is gone."""
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None


@contextmanager
def private_redis(folder: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def rabbitmqctl(*args: str, timeout: float = 120) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=timeout)


@contextmanager
def rabbitmq_app_stopped() -> Iterator[None]:
    """The shared RabbitMQ's application stopped for the block, and always started again after it."""
    try:
        rabbitmqctl("stop_app", timeout=60)
        yield
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
