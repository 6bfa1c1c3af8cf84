"""NATS JetStream transport: one JetStream publish per event, each acknowledged by the stream.

Every message carries the header `Nats-Msg-Id` = the event id, so the stream drops a copy a retry
sends within its duplicate window (2 minutes by default; the PubAck then says `duplicate`), and
headers `hook_id`, `event_type` and `Content-Type: application/json`. The body is the event as JSON.
The subject is the hook's `subject` template (default `actionhooks.{{list_id}}.{{event_type}}`);
a rendered subject that NATS cannot carry (empty, spaces, an empty token as in "a..b", wildcards)
fails that event alone as a PayloadError. The engine never creates streams: a subject no stream
listens on is a TargetRejected (retryable: the user may add the stream).

nats-py is asyncio; workers are not. The transport owns a private event loop on its own daemon
thread, created on the first `send` (after a prefork fork) and stopped by `close()`; `send` submits
one coroutine that publishes the whole batch at once, each message with its own reply subject
under one inbox subscription per connection (what nats-py's `publish_async` does; its reply
handler loses every API error, nats-py 2.16, so the transport reads the replies itself), and
waits for every ack until the attempt's deadline (HOOK_HTTP_TIMEOUT_SEC) or until the connection
drops. Outcome per
event: acked events are delivered, the raised error's `delivered` names them.

nats-py's own reconnect is off (a publish buffered during its reconnect could outlive the attempt
that gave up on it): a connection the server closed is replaced by the next `send`, once within
the call when it was found dead only then. Unless HOOK_ALLOW_PRIVATE_TARGETS is true every server
goes through the SSRF guard before each connect, and without TLS the client connects to the vetted
address. Servers a cluster advertises are never connected to, since nothing reconnects.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

import nats
import nats.errors as nerr
import nats.js.errors as jserr
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import PubAck

from actionhooks.delivery.base import Batch, Receipt, SerialTransport
from actionhooks.delivery.config import NatsDelivery
from actionhooks.delivery.errormap import Case, ErrorMap
from actionhooks.delivery.ssrf import vet_target
from actionhooks.delivery.wire import dumps
from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["NatsTransport"]

T = TypeVar("T")

# Tokens separated by dots, none empty, no whitespace, no wildcards (NATS subject rules for publishing).
_SUBJECT = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")
_SUBJECT_MAX = 1024
_WATCH_SEC = 0.05
_connection_numbers = itertools.count(1)
_LOST = (nerr.ConnectionClosedError, nerr.StaleConnectionError, nerr.OutboundBufferLimitError,
         nerr.ConnectionReconnectingError, nerr.ConnectionDrainingError)


def _authorization(exc: BaseException) -> bool:
    # nats-py raises a plain Error for the server's "-ERR 'Authorization Violation'".
    return isinstance(exc, nerr.AuthorizationError) or "authorization violation" in str(exc).lower()


# nats-py's exceptions → ours. Connecting: a refused login is a rejection, anything else (and the
# loop overrunning the deadline: a bare TimeoutError) leaves the server unreachable.
_CONNECT_ERRORS = ErrorMap(
    Case((OSError, TimeoutError, nerr.Error), TargetRejected, "{where} refused the connection: {exc!r}",
         when=_authorization),
    Case(TimeoutError, TargetUnreachable, "{where}: timed out after {timeout:g} s",
         when=lambda exc: not isinstance(exc, nerr.Error)),
    Case((OSError, TimeoutError, nerr.Error), TargetUnreachable),
)
# One publish's outcome: no ack in time or a lost connection is unreachable, a message over the
# server's max_payload can never be sent; anything else (no stream, a JetStream API error) is a rejection.
_PUBLISH_ERRORS = ErrorMap(
    Case(nerr.MaxPayloadError, PayloadError),
    Case((nerr.TimeoutError, *_LOST), TargetUnreachable),
)


class _Published:
    """One event's outcome: its subject and headers, and the PubAck or the error."""

    __slots__ = ("ack", "error", "headers", "subject")

    def __init__(self, subject: str, headers: dict[str, str]) -> None:
        self.subject = subject
        self.headers = headers
        self.ack: PubAck | None = None
        self.error: BaseException | None = None


class _LoopThread:
    """A private asyncio loop running on its own daemon thread: where nats-py's coroutines run for a sync caller."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="actionhooks-nats", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], deadline: float) -> T:
        """Run `coro` on the loop and wait for it until `deadline` (TimeoutError then, and `coro` is cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop and its thread, and close the loop once the thread has ended."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class NatsTransport(SerialTransport[NatsDelivery, _LoopThread]):
    """To `subject` on a JetStream stream, header Nats-Msg-Id = event_id, every publish acked.

    The per-process client is the loop thread; the connection (`_nc`) lives on it.
    """

    type: ClassVar[str] = "nats"

    def __init__(self, config: NatsDelivery, settings: Settings) -> None:
        super().__init__(config, settings)
        # Shown by the server's /connz monitoring endpoint.
        self.connection_name = f"actionhooks nats pid {os.getpid()} #{next(_connection_numbers)}"
        self._nc: Client | None = None
        self._inbox = ""
        self._tokens = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}  # reply token -> ack of this attempt

    @property
    def is_open(self) -> bool:
        """Whether the transport holds a connection or its loop thread (False before the first send and after close)."""
        return self._nc is not None or self._client is not None

    def _release(self) -> None:
        """Close the connection, stop the loop thread and close the loop."""
        if self._own_client() is not None:
            self._disconnect()
        self._nc = None
        self._drop()

    def _open_client(self) -> _LoopThread:
        return _LoopThread()

    def _shut(self, client: _LoopThread) -> None:
        client.stop()

    def _abandon(self, client: _LoopThread) -> None:
        self._nc = None  # the parent's connection: its loop thread does not exist here

    def _send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        published, refused = self._messages(batch)
        pending = [i for i in range(len(batch.events)) if i not in refused]
        for attempt in (1, 2):
            reused = self._own_client() is not None and self._nc is not None
            try:
                self._run(self._publish_all(batch, published, pending, deadline), deadline + 1.0)
            except _CONNECT_ERRORS.caught as exc:  # connect failed (or the loop overran the deadline)
                self._disconnect()
                raise _CONNECT_ERRORS.error(
                    exc, delivered=_acked(published), where=self._where(), timeout=self.timeout
                ) from exc
            lost = [i for i in pending if isinstance(published[i].error, _LOST)]
            if lost and attempt == 1 and reused and len(lost) == len(pending) and time.monotonic() < deadline:
                self._disconnect()  # a cached connection the server had closed: one new connection
                continue
            if lost:
                self._disconnect()
            break
        return self._outcome(batch, published, refused, started)

    def _messages(self, batch: Batch) -> tuple[list[_Published], dict[int, PayloadError]]:
        published: list[_Published] = []
        refused: dict[int, PayloadError] = {}
        for index, event in enumerate(batch.events):
            subject = self.templates["subject"].render(event)
            headers = {
                "Nats-Msg-Id": str(event.get("event_id", "")),
                "hook_id": str(batch.hook_id),
                "event_type": str(event.get("event_type", "")),
                "Content-Type": "application/json",
            }
            published.append(_Published(subject, headers))
            if len(subject) > _SUBJECT_MAX or not _SUBJECT.match(subject):
                refused[index] = PayloadError(
                    f"subject {subject!r} (from template {self.templates['subject'].source!r}) is not a NATS subject: "
                    "dot-separated tokens, none empty, no spaces or wildcards",
                    retryable=False,
                )
        return published, refused

    def _outcome(
        self, batch: Batch, published: list[_Published], refused: dict[int, PayloadError], started: float
    ) -> Receipt:
        failed: dict[int, BaseException] = {i: p.error for i, p in enumerate(published) if p.error is not None}
        failed.update(refused)
        if failed:
            raise self._failure(failed, _acked(published), len(published))
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            payload=[
                {
                    "subject": p.subject,
                    "headers": p.headers,
                    "stream": p.ack.stream if p.ack else None,
                    "seq": p.ack.seq if p.ack else None,
                    "duplicate": bool(p.ack and p.ack.duplicate),
                    "data": event,
                }
                for p, event in zip(published, batch.events, strict=True)
            ],
            details={"messages": len(published)},
        )

    # On the transport's loop.
    async def _publish_all(
        self, batch: Batch, published: list[_Published], pending: list[int], deadline: float
    ) -> None:
        nc = await self._connection(deadline)
        loop = asyncio.get_running_loop()
        futures: dict[int, asyncio.Future[PubAck]] = {}
        for index in pending:
            message = published[index]
            if message.ack is not None:
                continue
            message.error = None
            token = str(next(self._tokens))
            future: asyncio.Future[PubAck] = loop.create_future()
            self._waiting[token] = future
            try:
                await nc.publish(message.subject, dumps(batch.events[index]), reply=f"{self._inbox}.{token}",
                                 headers=dict(message.headers))
            except (nerr.Error, OSError) as exc:
                message.error = exc
                del self._waiting[token]
                continue
            futures[index] = future
        # Wait for the acks until the deadline; when the connection drops, nothing more will come.
        waiting: set[asyncio.Future[PubAck]] = set(futures.values())
        while waiting and time.monotonic() < deadline and nc.is_connected:
            _done, waiting = await asyncio.wait(waiting, timeout=min(_WATCH_SEC, deadline - time.monotonic()))
        self._waiting.clear()  # a late ack of this attempt finds nothing to resolve
        for index, future in futures.items():
            message = published[index]
            if not future.done():
                message.error = nerr.TimeoutError() if nc.is_connected else nerr.ConnectionClosedError()
            elif future.exception() is not None:
                message.error = future.exception()
            else:
                message.ack = future.result()

    async def _on_ack(self, msg: Msg) -> None:
        """A JetStream publish's reply: a PubAck, an API error, or "no responders" (no stream)."""
        future = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(jserr.NoStreamResponseError())
            return
        try:
            answer = json.loads(msg.data)
            if "error" in answer:
                # nats-py's APIError.from_error raises the specific error instead of returning it.
                jserr.APIError.from_error(answer["error"])
            future.set_result(PubAck.from_response(answer))
        except (jserr.APIError, ValueError, TypeError, KeyError) as exc:
            future.set_exception(exc)

    async def _connection(self, deadline: float) -> Client:
        if self._nc is not None and self._nc.is_connected:
            return self._nc
        if self._nc is not None:
            await self._close_connection()
        cfg = self.config
        servers = []
        for name, port in cfg.addresses():
            host = name
            if not self.settings.HOOK_ALLOW_PRIVATE_TARGETS:
                address = str(vet_target("NATS", name, port)[0])
                host = name if cfg.tls else address
            servers.append(f"{'tls' if cfg.tls else 'nats'}://{_bracketed(host)}:{port}")
        self._nc = await nats.connect(
            servers=servers,
            name=self.connection_name,
            allow_reconnect=False,
            connect_timeout=max(0.001, deadline - time.monotonic()),
            # nats-py's first connect loops over the servers "until max_reconnect_attempts": 0 means
            # forever, so 1 (each server tried twice, without the default 2 s wait in between).
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            dont_randomize=True,
            user=cfg.username,
            password=cfg.password,
            token=cfg.token,
            tls=ssl.create_default_context() if cfg.tls else None,
            error_cb=_ignore,
            closed_cb=_noop,
            disconnected_cb=_noop,
        )
        # One reply subscription per connection serves the acks of every later publish.
        self._inbox = self._nc.new_inbox()
        await self._nc.subscribe(self._inbox + ".*", cb=self._on_ack)
        return self._nc

    async def _close_connection(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()

    # The loop thread.
    def _run(self, coro: Coroutine[Any, Any, T], deadline: float) -> T:
        """Run `coro` on the transport's loop (started on first use) and wait for it until `deadline`."""
        return self._ready_client().run(coro, deadline)

    def _disconnect(self) -> None:
        """Close the connection (the loop thread stays for the next send)."""
        if self._nc is not None and self._own_client() is not None:
            try:
                self._run(self._close_connection(), time.monotonic() + 1.0)
            except (TimeoutError, nerr.Error):
                self._nc = None

    # Errors.
    def _where(self) -> str:
        return f"NATS {','.join(self.config.servers)}"

    def _failure(self, failed: dict[int, BaseException], delivered: frozenset[int], total: int) -> DeliveryError:
        first = next(iter(failed.values()))
        text = f"{self._where()}: {len(failed)} of {total} publish(es) not acknowledged: {_describe(first)}"
        error = _PUBLISH_ERRORS.batch_kind(failed.values())(text, delivered=delivered)
        error.__cause__ = first
        return error


def _acked(published: list[_Published]) -> frozenset[int]:
    return frozenset(i for i, p in enumerate(published) if p.ack is not None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, jserr.NoStreamResponseError):
        return "no JetStream stream listens on this subject (create one that captures it)"
    if isinstance(exc, PayloadError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _ignore(_exc: Exception) -> None:
    """nats-py logs errors it reports to no callback; ours surface through the publishes."""


async def _noop() -> None:
    pass
