"""RabbitMQ transports: one persistent JSON message per event, with publisher confirms, pipelined.

Confirming each message before publishing the next costs a round trip per event (715 msg/s here);
these transports publish the whole batch, then wait for all confirms. pika's BlockingChannel cannot
do that (its confirm mode waits inside every basic_publish), so they drive a SelectConnection's I/O
loop synchronously inside `send`: start an operation, run the loop until its callback fired, a
failure was recorded, or the attempt's deadline passed. The deadline of one attempt (connect,
declare, publish, confirms) is HOOK_HTTP_TIMEOUT_SEC, the engine's one per-attempt timeout.

Outcome per event: acked events are delivered; nacked ones and ones unconfirmed at the deadline are
not, and the raised error's `delivered` names the acked indexes so a retry sends only the rest.
`mandatory` is off: a message the exchange routes nowhere is the exchange's decision, not a failure.

Unless HOOK_ALLOW_PRIVATE_TARGETS is true, the host goes through the SSRF guard (delivery/ssrf.py)
before every connect: all its addresses must be public, and pika connects to the vetted address, not
to the name, so a name that re-resolves to a private address in between is never reached. TLS still
checks the certificate against the configured host name.

The connection is opened on the first `send` (after a Celery prefork fork), reused by later ones,
and reconnected once within a call when a reused connection turns out to be closed. Any failure
drops it, so the next attempt starts clean (late confirms of a timed-out attempt cannot be mistaken
for the next one's).
"""

from __future__ import annotations

import itertools
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import orjson
import pika
import pika.exceptions as amqp
from pika.adapters.utils.connection_workflow import AMQPConnectorException
from pika.channel import Channel
from pika.frame import Method

from actionhooks.delivery.base import Batch, Receipt, SerialTransport
from actionhooks.delivery.config import RabbitMQExchangeDelivery, RabbitMQQueueDelivery
from actionhooks.delivery.errormap import Case, ErrorMap
from actionhooks.delivery.ssrf import vet_target
from actionhooks.delivery.wire import dumps
from actionhooks.errors import PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["RabbitMQExchangeTransport", "RabbitMQQueueTransport"]

AmqpConfigT = TypeVar("AmqpConfigT", RabbitMQQueueDelivery, RabbitMQExchangeDelivery)

_PERSISTENT = 2
_PRECONDITION_FAILED = 406
_REFUSED_CODES = frozenset({403, 530})  # ACCESS_REFUSED, NOT_ALLOWED (vhost)
_connection_numbers = itertools.count(1)

# Starts one declaration on a channel; the callback fires on its -Ok.
_Declaration = Callable[[Channel, Callable[[Method], None]], None]


class _Timeout(Exception):
    """The attempt's deadline passed while waiting for `what`."""


def _refused(exc: amqp.ConnectionClosedByBroker) -> bool:
    return exc.reply_code in _REFUSED_CODES


# pika's exceptions (and the attempt's deadline) → ours; pika's reprs name the cause.
_ERRORS = ErrorMap(
    Case(_Timeout, TargetUnreachable, "{where}: {exc}"),
    Case(amqp.ChannelClosedByBroker, TargetRejected, "{where}: {exc.reply_code} {exc.reply_text}"),
    Case((amqp.ProbableAuthenticationError, amqp.ProbableAccessDeniedError, amqp.AuthenticationError),
         TargetRejected, "{where} refused the connection: {exc!r}"),
    Case(amqp.ConnectionClosedByBroker, TargetRejected, "{where} refused the connection: {exc!r}", when=_refused),
    Case((amqp.AMQPConnectionError, AMQPConnectorException), TargetUnreachable, "{where}: {exc!r}"),
    Case(amqp.AMQPError, TargetRejected, "{where}: {exc!r}"),
)
# While publishing, the broker refuses only the message itself with PRECONDITION_FAILED (over max_message_size).
_WHILE_PUBLISHING = ErrorMap(
    Case(amqp.ChannelClosedByBroker, PayloadError, "{where} refused a message: {exc.reply_text}",
         when=lambda exc: exc.reply_code == _PRECONDITION_FAILED),
    *_ERRORS.cases,
)


@dataclass(frozen=True, slots=True)
class _Message:
    exchange: str
    routing_key: str
    properties: pika.BasicProperties
    body: bytes

    def sent(self) -> dict[str, Any]:
        """How the message appears in Receipt.payload (the /test endpoint shows it)."""
        p = self.properties
        return {
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            "properties": {
                "content_type": p.content_type,
                "delivery_mode": p.delivery_mode,
                "message_id": p.message_id,
                "headers": p.headers,
            },
            "body": orjson.loads(self.body),
        }


class _AmqpTransport(SerialTransport[AmqpConfigT, pika.SelectConnection]):
    """Connection, channel, declarations and pipelined confirms, shared by both RabbitMQ transports.

    The client is the connection; sends are serial as pika is not thread-safe.
    """

    def __init__(self, config: AmqpConfigT, settings: Settings) -> None:
        super().__init__(config, settings)
        # Shown by `rabbitmqctl list_connections client_properties` and the management UI.
        self.connection_name = f"actionhooks {self.type} pid {os.getpid()} #{next(_connection_numbers)}"
        self._channel: Channel | None = None
        self._declared: set[str] = set()
        self._failure: BaseException | None = None
        self._tag = 0  # delivery tag of the last message published on the channel
        self._outstanding: OrderedDict[int, int] = OrderedDict()  # delivery tag -> event index
        self._acked: set[int] = set()
        self._nacked: set[int] = set()
        self._publishing = False

    # What the two transports differ in.
    def _route(self, event: dict[str, Any]) -> tuple[str, str]:
        """(exchange, routing key) of one event."""
        raise NotImplementedError

    def _declare(self, messages: list[_Message], deadline: float) -> None:
        """Declare what `messages` are published to, each name once per connection."""
        raise NotImplementedError

    def _send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        messages = [self._message(batch.hook_id, event) for event in batch.events]
        self._acked = set()
        for attempt in (1, 2):
            reused = self._alive()
            try:
                self._deliver(messages, deadline)
                break
            except _ERRORS.caught as exc:
                self._drop()
                lost = isinstance(exc, amqp.AMQPConnectionError)
                if attempt == 1 and reused and lost and time.monotonic() < deadline:
                    continue  # a stale cached connection: reconnect once, resend what was not acked
                errors = _WHILE_PUBLISHING if self._publishing else _ERRORS
                raise errors.error(exc, delivered=frozenset(self._acked), where=self._where()) from exc
        if self._nacked:
            raise TargetRejected(
                f"RabbitMQ nacked {len(self._nacked)} of {len(messages)} message(s)",
                delivered=frozenset(self._acked),
            )
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            payload=[m.sent() for m in messages],
            details={"messages": len(messages)},
        )

    @property
    def is_open(self) -> bool:
        """Whether the transport holds an open connection (False before the first send and after close)."""
        return self._client is not None and self._client.is_open

    def _message(self, hook_id: int, event: dict[str, Any]) -> _Message:
        exchange, routing_key = self._route(event)
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=_PERSISTENT,
            message_id=None if event.get("event_id") is None else str(event["event_id"]),
            headers={"hook_id": hook_id, "event_type": event.get("event_type", "")},
        )
        return _Message(exchange, routing_key, properties, dumps(event))

    def _deliver(self, messages: list[_Message], deadline: float) -> None:
        """Publish every message not acked yet, then wait for all their confirms.

        `_publishing` stays set when this raises while publishing, so the error is judged as one of
        the publish (a PRECONDITION_FAILED then refuses the message itself).
        """
        self._publishing = False
        self._connect(deadline)
        self._declare(messages, deadline)
        self._outstanding.clear()
        self._nacked = set()
        channel = self._channel
        if channel is None:  # _connect opened one or raised: a bug, failed as pika fails an operation
            raise amqp.ChannelWrongStateError("no channel to publish on")
        self._publishing = True
        for index, message in enumerate(messages):
            if index in self._acked:
                continue
            channel.basic_publish(message.exchange, message.routing_key, message.body, message.properties)
            self._tag += 1
            self._outstanding[self._tag] = index
        self._run_until(lambda: not self._outstanding, deadline, "publisher confirms")
        self._publishing = False

    # Connection and channel.
    def _alive(self) -> bool:
        """Whether a connection from an earlier send is still usable (read what the broker sent meanwhile)."""
        conn = self._own_client()
        if conn is None:
            return False
        self._failure = None
        loop = conn.ioloop
        loop.call_later(0, loop.stop)
        loop.start()  # one non-blocking poll: picks up a Connection.Close or EOF that came while idle
        return conn.is_open  # a closed one is replaced by _connect: that is the one reconnect

    def _connect(self, deadline: float) -> None:
        conn, channel = self._client, self._channel
        if conn is not None and conn.is_open and channel is not None and channel.is_open:
            return
        self._drop()
        cfg = self.config
        params = pika.ConnectionParameters(
            host=cfg.host if self.settings.HOOK_ALLOW_PRIVATE_TARGETS else self._vetted_address(),
            port=cfg.port,
            virtual_host=cfg.vhost,
            credentials=pika.PlainCredentials(cfg.username, cfg.password),
            ssl_options=pika.SSLOptions(ssl.create_default_context(), cfg.host) if cfg.tls else None,
            connection_attempts=1,
            socket_timeout=self.timeout,
            stack_timeout=self.timeout,
            blocked_connection_timeout=self.timeout,
            client_properties={"connection_name": self.connection_name},
        )
        opened: list[bool] = []
        self._adopt(pika.SelectConnection(
            params,
            on_open_callback=lambda _c: self._done(opened),
            on_open_error_callback=lambda _c, exc: self._fail(exc),
            on_close_callback=lambda _c, exc: self._fail(exc),
        ))
        self._failure = None
        self._run_until(lambda: bool(opened), deadline, "the connection to open")
        self._channel = self._open_channel(deadline)

    def _vetted_address(self) -> str:
        """The host's first address once the SSRF guard passed all of them (TargetForbidden otherwise)."""
        cfg = self.config
        acked = frozenset(self._acked)  # a reconnect within a send keeps what the first connection delivered
        return str(vet_target("RabbitMQ", cfg.host, cfg.port, acked)[0])

    def _open_channel(self, deadline: float) -> Channel:
        ready: list[bool] = []
        channel = self._connection().channel(on_open_callback=lambda _ch: self._done(ready))
        channel.add_on_close_callback(lambda _ch, exc: self._fail(exc))
        self._run_until(lambda: bool(ready), deadline, "the channel to open")
        ready.clear()
        channel.confirm_delivery(self._on_confirm, callback=lambda _f: self._done(ready))
        self._run_until(lambda: bool(ready), deadline, "confirm mode")
        self._tag = 0
        return channel

    def _declare_once(
        self, name: str, start: _Declaration, deadline: float, fallback: _Declaration | None = None
    ) -> None:
        """Run a declaration once per connection; on PRECONDITION_FAILED, run `fallback` on a new channel."""
        if name in self._declared:
            return
        if self._channel is None:  # _connect opened one or raised: a bug, failed as pika fails an operation
            raise amqp.ChannelWrongStateError(f"no channel to declare {name!r} on")
        done: list[bool] = []
        start(self._channel, lambda _f: self._done(done))
        try:
            self._run_until(lambda: bool(done), deadline, f"the declaration of {name!r}")
        except amqp.ChannelClosedByBroker as exc:
            if fallback is None or exc.reply_code != _PRECONDITION_FAILED:
                raise
            self._failure = None
            self._channel = self._open_channel(deadline)
            fallback(self._channel, lambda _f: self._done(done))
            self._run_until(lambda: bool(done), deadline, f"the passive declaration of {name!r}")
        self._declared.add(name)

    def _drop(self) -> None:
        """Forget the connection (closing it when it is ours and open); idempotent."""
        conn, self._client, self._channel = self._client, None, None
        self._declared.clear()
        self._outstanding.clear()
        if conn is None or self._pid != os.getpid() or conn.is_closed:
            return
        if not conn.is_closing:
            try:
                conn.close()
            except amqp.AMQPError:
                return
        # Let the close handshake finish so the broker logs a clean close, not a lost client.
        self._failure = None
        self._client = conn
        try:
            self._run_until(lambda: conn.is_closed, time.monotonic() + 1.0, "the connection to close")
        except (amqp.AMQPError, _Timeout):
            pass
        finally:
            self._client = None

    # The loop.
    def _run_until(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        """Run the I/O loop until `done()`; raise a failure a callback recorded, or _Timeout at deadline."""
        loop = self._connection().ioloop
        while True:
            if done():
                return
            if self._failure is not None:
                raise self._failure
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout(f"timed out after {self.timeout:g} s waiting for {what}")
            timer = loop.call_later(remaining, loop.stop)
            loop.start()
            loop.remove_timeout(timer)

    def _connection(self) -> pika.SelectConnection:
        """The connection an operation runs on; one was opened before any operation starts."""
        if self._client is None:
            raise amqp.ConnectionWrongStateError("no connection (dropped during the attempt)")
        return self._client

    def _done(self, flag: list[bool]) -> None:
        flag.append(True)
        if self._client is not None:
            self._client.ioloop.stop()

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, amqp.ChannelClosedByClient | amqp.ConnectionClosedByClient):
            pass  # our own close(), not a failure of the attempt
        elif self._failure is None or isinstance(exc, amqp.AMQPConnectionError | AMQPConnectorException):
            self._failure = exc  # the connection's reason wins over the channel's (it closes its channels)
        if self._client is not None:
            self._client.ioloop.stop()

    def _on_confirm(self, frame: Method) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        outcome = self._acked if isinstance(method, pika.spec.Basic.Ack) else self._nacked
        if method.multiple:
            while self._outstanding and next(iter(self._outstanding)) <= tag:
                outcome.add(self._outstanding.popitem(last=False)[1])
        elif tag in self._outstanding:
            outcome.add(self._outstanding.pop(tag))
        if not self._outstanding and self._client is not None:
            self._client.ioloop.stop()

    def _where(self) -> str:
        return f"RabbitMQ {self.config.host}:{self.config.port} vhost {self.config.vhost!r}"


class RabbitMQQueueTransport(_AmqpTransport[RabbitMQQueueDelivery]):
    """To the default exchange, routing key = the queue (empty `queue`: each event's `event_type`).

    A queue is declared durable; a queue that already exists with other arguments (a quorum queue,
    a length limit) is used as it is, checked by a passive declaration.
    """

    type: ClassVar[str] = "rabbitmq_queue"

    def _route(self, event: dict[str, Any]) -> tuple[str, str]:
        return "", self.config.queue or str(event.get("event_type", ""))

    def _declare(self, messages: list[_Message], deadline: float) -> None:
        for queue in dict.fromkeys(m.routing_key for m in messages):
            self._declare_once(
                queue,
                lambda ch, cb, q=queue: ch.queue_declare(q, durable=True, callback=cb),
                deadline,
                fallback=lambda ch, cb, q=queue: ch.queue_declare(q, passive=True, callback=cb),
            )


class RabbitMQExchangeTransport(_AmqpTransport[RabbitMQExchangeDelivery]):
    """To the configured exchange, routing key `<list_id>.<event_type>`.

    An event without `list_id` gets an empty first word (".open"), which topic bindings such as
    "*.open" still match: the key keeps two words so bindings never depend on whether a list is set.
    """

    type: ClassVar[str] = "rabbitmq_exchange"

    def _route(self, event: dict[str, Any]) -> tuple[str, str]:
        list_id = event.get("list_id")
        return self.config.exchange, f"{'' if list_id is None else list_id}.{event.get('event_type', '')}"

    def _declare(self, messages: list[_Message], deadline: float) -> None:
        cfg = self.config
        self._declare_once(
            cfg.exchange,
            lambda ch, cb: ch.exchange_declare(
                cfg.exchange, cfg.exchange_type, durable=cfg.durable, auto_delete=cfg.auto_delete, callback=cb
            ),
            deadline,
        )
