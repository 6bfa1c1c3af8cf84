"""Redis Streams transport: one XADD per event, the whole batch in one pipeline (one round trip).

Each entry has the fields `event` (the event as JSON), `event_id`, `hook_id` and `event_type`, so a
consumer group can deduplicate by `event_id` without decoding the event. Entry ids are the
server's (`*`): stream ids must grow, so the event id cannot be the entry id. `maxlen` trims with
`MAXLEN ~ N` (approximate: whole macro nodes, cheap), never exactly.

Outcome per event: the pipeline is sent without a transaction and read with
`raise_on_error=False`, so each reply is the entry id (delivered) or that command's error (for
instance WRONGTYPE when the key is not a stream); the raised error's `delivered` names the
others. When the connection fails mid-pipeline, which commands the server ran is unknown: nothing
counts as delivered and the retry sends them all again (at least once; `event_id` identifies the
copies).

redis-py's own retries are off (one `send` = one attempt); a pooled connection found closed (the
server restarted while idle) is replaced once within the call, as the Transport contract allows.
Unless HOOK_ALLOW_PRIVATE_TARGETS is true, the host goes through the SSRF guard before every new
connection and redis:// connects to the vetted address. rediss:// connects to the name (the
certificate is checked against it), which leaves the DNS-rebinding gap Kafka has.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, ClassVar

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from actionhooks.delivery.base import Batch, Receipt, SerialTransport
from actionhooks.delivery.config import RedisStreamDelivery
from actionhooks.delivery.ssrf import vet_target
from actionhooks.delivery.templates import FieldTemplate
from actionhooks.delivery.wire import dumps
from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["RedisStreamTransport"]

_client_numbers = itertools.count(1)
_REFUSED = (rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError)


class RedisStreamTransport(SerialTransport[RedisStreamDelivery]):
    """XADD <stream> [MAXLEN ~ n] * event <json> event_id <id> hook_id <id> event_type <type>."""

    type: ClassVar[str] = "redis_stream"

    def __init__(self, config: RedisStreamDelivery, settings: Settings) -> None:
        super().__init__(config, settings)
        self.timeout = settings.HOOK_HTTP_TIMEOUT_SEC
        self._stream = FieldTemplate(config, "stream", settings)
        # Shown by CLIENT LIST (Redis names have no spaces).
        self.client_name = f"actionhooks-pid{os.getpid()}-{next(_client_numbers)}"
        self._client: redis.Redis | None = None
        self._pid = 0

    @property
    def is_open(self) -> bool:
        """Whether the transport holds a client (False before the first send and after close)."""
        return self._client is not None

    def _release(self) -> None:
        self._drop()

    def _send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        entries = [self._entry(batch.hook_id, event) for event in batch.events]
        for attempt in (1, 2):
            reused = self._client is not None and self._pid == os.getpid()
            client = self._ready_client()
            try:
                replies = self._pipeline(client, entries)
                break
            except (rex.ConnectionError, rex.TimeoutError) as exc:
                self._drop()
                if attempt == 1 and reused and isinstance(exc, rex.ConnectionError) and not isinstance(exc, _REFUSED):
                    continue  # a pooled connection the server closed while idle: one new connection
                raise self._translate(exc) from exc
            except rex.RedisError as exc:
                self._drop()
                raise self._translate(exc) from exc
        failed = {i: reply for i, reply in enumerate(replies) if isinstance(reply, Exception)}
        if failed:
            delivered = frozenset(range(len(entries))) - frozenset(failed)
            first = next(iter(failed.values()))
            error = TargetRejected(
                f"{self._where()}: {len(failed)} of {len(entries)} XADD refused: {first}", delivered=delivered
            )
            raise error from first
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            payload=[
                {"stream": stream, "id": _text(reply), "fields": {**fields, "event": event}}
                for (stream, fields), reply, event in zip(entries, replies, batch.events, strict=True)
            ],
            details={"messages": len(entries)},
        )

    def _entry(self, hook_id: int, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        stream = self._stream.render(event)
        if not stream:
            raise PayloadError(f"stream template {self._stream.source!r} rendered an empty name", retryable=False)
        fields = {
            "event": dumps(event),
            "event_id": str(event.get("event_id", "")),
            "hook_id": str(hook_id),
            "event_type": str(event.get("event_type", "")),
        }
        return stream, fields

    def _pipeline(self, client: redis.Redis, entries: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for stream, fields in entries:
            pipe.xadd(stream, fields, maxlen=self.config.maxlen, approximate=True)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        # A lost connection is reported in the replies too: then nothing of the pipeline is known.
        lost = next((r for r in replies if isinstance(r, rex.ConnectionError | rex.TimeoutError)), None)
        if lost is not None:
            raise lost
        return replies

    def _ready_client(self) -> redis.Redis:
        if self._client is not None and self._pid != os.getpid():
            self._client = None  # inherited over fork: the parent's sockets are not ours to use or close
        if self._client is None:
            host, port, db, tls = self.config.address()
            if not self.settings.HOOK_ALLOW_PRIVATE_TARGETS:
                address = str(vet_target("Redis", host, port)[0])
                host = host if tls else address
            self._client = redis.Redis(
                host=host,
                port=port,
                db=db,
                username=self.config.username,
                password=self.config.password,
                ssl=tls,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_error=[],
                max_connections=1,  # the lock allows one pipeline at a time: one connection, reused
                client_name=self.client_name,
            )
            self._pid = os.getpid()
        return self._client

    def _drop(self) -> None:
        """Forget the client, closing its connection when it is ours (not inherited over a fork); idempotent."""
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.connection_pool.disconnect()
            client.close()

    def _where(self) -> str:
        host, port, db, _tls = self.config.address()
        return f"Redis {host}:{port}/{db}"

    def _translate(self, exc: rex.RedisError) -> DeliveryError:
        text = f"{self._where()}: {type(exc).__name__}: {exc}"
        if isinstance(exc, _REFUSED):
            return TargetRejected(f"{self._where()} refused the connection: {exc}")
        if isinstance(exc, rex.ConnectionError | rex.TimeoutError):
            return TargetUnreachable(text)
        return TargetRejected(text)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
