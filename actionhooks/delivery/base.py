"""The one interface every transport implements.

A transport turns one `Batch` of rendered events into one attempt against its target:

- `send(batch)` makes exactly one attempt. It returns a `Receipt` on success and raises a
  `DeliveryError` subclass (errors.py) on failure. It never sleeps, never retries and never returns a
  failure value; the only exception is one reconnect of a stale cached connection inside the call.
- It owns its wire format (JSON array, query parameters, one message per event), the identity
  headers (`webhook-id`, `message_id`, `event_id`, `hook_id`, `event_type`) and signing.
- Library exceptions are translated at this boundary into our typed errors, chained with `from`,
  by the transport's one table (delivery/errormap.py).
- `close()` releases connections; it is idempotent and a no-op by default.
- `prune()` closes connections left idle past their expiry; the worker calls it every few seconds
  for each transport it keeps, and it is a no-op by default.

Transports know nothing of Celery, retries or storage: the worker applies the retry policy, and
POST /hooks/{id}/test calls the same `send` with no policy at all.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel

from actionhooks.delivery import wire
from actionhooks.delivery.templates import FieldTemplate
from actionhooks.errors import DeliveryError, TargetUnreachable
from actionhooks.settings import Settings

log = logging.getLogger(__name__)

# httpx logs every request's full URL (userinfo and query included) at INFO: never let it (this
# module is loaded by the API and by every worker). Delivery outcomes
# are logged by the worker itself (worker/deliver.py), without credentials.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

ConfigT = TypeVar("ConfigT", bound=BaseModel)
ClientT = TypeVar("ClientT")


class Batch:
    """Events of one hook sent in one attempt; `batch_id` stays the same across retries (dedupe key).

    Made from the events, or from their JSON array as stored (`body`, with its `n_events`): the drain
    hands over the array it claimed as it is, so a transport that sends the array (HTTP POST) sends
    those bytes without decoding and re-encoding them (two passes over every event that change no
    byte: the stored array is orjson's encoding of the events, wire.dumps's). `events` decodes the
    array on first use, for transports that send per event or render templates from the events.
    A batch is sent by one thread at a time, so the decoded list is cached without a lock.
    """

    __slots__ = ("_body", "_events", "attempt", "batch_id", "hook_id", "n_events")

    def __init__(
        self,
        hook_id: int,
        batch_id: str,
        attempt: int,
        events: list[dict[str, Any]] | None = None,
        *,
        body: bytes | None = None,
        n_events: int | None = None,
    ) -> None:
        if (events is None) == (body is None):
            raise ValueError(f"batch {batch_id}: give either its events or its encoded body")
        if events is not None:
            n_events = len(events)
        elif n_events is None:
            raise ValueError(f"batch {batch_id}: an encoded body needs its number of events")
        self.hook_id = hook_id
        self.batch_id = batch_id
        self.attempt = attempt
        self.n_events: int = n_events
        self._events = events
        self._body = body

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events (decoded from the body on first use)."""
        if self._events is None:
            self._events = orjson.loads(self._body)  # type: ignore[arg-type]  # one of the two is set
        return self._events

    @property
    def body(self) -> bytes:
        """The events as one compact JSON array: the stored bytes, or wire.dumps of the events."""
        if self._body is None:
            self._body = wire.dumps(self._events)
        return self._body

    def known_events(self) -> list[dict[str, Any]] | None:
        """The events if the batch was made from them (or they were decoded), without decoding."""
        return self._events

    def __repr__(self) -> str:
        return (f"Batch(hook_id={self.hook_id}, batch_id={self.batch_id!r}, attempt={self.attempt}, "
                f"n_events={self.n_events})")


@dataclass(frozen=True)
class Receipt:
    """What a successful attempt returned: status (HTTP only), latency, a bounded response excerpt, the payload sent."""

    latency_ms: float
    status_code: int | None = None
    response_excerpt: str = ""
    payload: Any = None
    details: dict[str, Any] = field(default_factory=dict)


class Transport(Generic[ConfigT]):
    """Base class: one required method, `send`. Subclasses set `type` and are registered in delivery/__init__.py."""

    type: ClassVar[str]

    def __init__(self, config: ConfigT, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        # The config's per-event templates (Kafka key, topic, stream and subject names...), compiled once.
        self.templates = {
            name: FieldTemplate(config, name, settings) for name in getattr(config, "TEMPLATE_FIELDS", ())
        }

    def send(self, batch: Batch) -> Receipt:
        """Make exactly one attempt to deliver `batch`; raise a DeliveryError subclass on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; idempotent."""

    def prune(self) -> None:
        """Close connections idle past their expiry (or closed by the other end) without waiting for
        the next send; called by the worker's watcher thread while sends may run."""

    def __enter__(self) -> Transport[ConfigT]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SerialTransport(Transport[ConfigT], Generic[ConfigT, ClientT]):
    """A transport whose one client (connection, producer) serves one attempt at a time.

    `send` and `close` hold one lock: a threads-pool worker can run two drain tasks of one hook, or
    close a changed hook's transport, at the same moment. The client belongs to the process that
    made it: it is made on the first `send` after a Celery prefork fork (`_ready_client`), and one
    inherited from the parent is forgotten, never used or closed (its sockets and threads are the
    parent's). Subclasses implement `_send` (the attempt), `_open_client` and `_shut` (close one).
    """

    def __init__(self, config: ConfigT, settings: Settings) -> None:
        super().__init__(config, settings)
        self.timeout = settings.HOOK_HTTP_TIMEOUT_SEC  # the deadline of one attempt
        self._lock = threading.Lock()
        self._client: ClientT | None = None
        self._pid = 0  # the process that made `_client`

    @property
    def is_open(self) -> bool:
        """Whether the transport holds a client (False before the first send and after close)."""
        return self._client is not None

    def send(self, batch: Batch) -> Receipt:
        with self._lock:
            return self._send(batch)

    def close(self) -> None:
        with self._lock:
            self._release()

    def _send(self, batch: Batch) -> Receipt:
        raise NotImplementedError

    def _own_client(self) -> ClientT | None:
        """The client if this process made it; one inherited over a fork is forgotten (`_abandon`)."""
        if self._client is not None and self._pid != os.getpid():
            client, self._client = self._client, None
            self._abandon(client)
        return self._client

    def _ready_client(self) -> ClientT:
        """This process's client, made on first use."""
        client = self._own_client()
        if client is None:
            client = self._open_client()
            self._adopt(client)
        return client

    def _adopt(self, client: ClientT) -> None:
        """Hold `client` as this process's (before it connects, so a failed connect can close it)."""
        self._client, self._pid = client, os.getpid()

    def _open_client(self) -> ClientT:
        raise NotImplementedError

    def _drop(self) -> None:
        """Forget the client, closing it when this process made it; idempotent."""
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            self._shut(client)

    def _release(self) -> None:
        """What `close` does: drop the client."""
        self._drop()

    def _shut(self, client: ClientT) -> None:
        """Close a client of this process."""

    def _abandon(self, client: ClientT) -> None:
        """What becomes of a client inherited over a fork: by default it is merely forgotten."""


def attempt(transport: Transport[Any], batch: Batch) -> Receipt:
    """`transport.send(batch)`, where an exception the transport failed to translate becomes a
    retryable TargetUnreachable: a transport bug may cost a retry, never a lost batch or a 500."""
    try:
        return transport.send(batch)
    except DeliveryError:
        raise
    except Exception as exc:
        log.exception("transport %s raised an untranslated error", type(transport).__name__)
        raise TargetUnreachable(f"unexpected {type(exc).__name__}: {exc}") from exc
