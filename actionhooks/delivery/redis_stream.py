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
from actionhooks.delivery.errormap import Case, ErrorMap
from actionhooks.delivery.ssrf import vet_target
from actionhooks.delivery.wire import dumps
from actionhooks.errors import PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["RedisStreamTransport"]

_client_numbers = itertools.count(1)
# redis-py's exceptions → ours. A refused login is a ConnectionError to redis-py: it comes first.
_ERRORS = ErrorMap(
    Case((rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError), TargetRejected,
         "{where} refused the connection: {exc}"),
    Case((rex.ConnectionError, rex.TimeoutError), TargetUnreachable),
    Case(rex.RedisError, TargetRejected),  # WRONGTYPE, OOM... : the server answered and refused
)


class RedisStreamTransport(SerialTransport[RedisStreamDelivery, redis.Redis]):
    """XADD <stream> [MAXLEN ~ n] * event <json> event_id <id> hook_id <id> event_type <type>."""

    type: ClassVar[str] = "redis_stream"

    def __init__(self, config: RedisStreamDelivery, settings: Settings) -> None:
        super().__init__(config, settings)
        # Shown by CLIENT LIST (Redis names have no spaces).
        self.client_name = f"actionhooks-pid{os.getpid()}-{next(_client_numbers)}"

    def _send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        entries = [self._entry(batch.hook_id, event) for event in batch.events]
        for attempt in (1, 2):
            reused = self._own_client() is not None
            client = self._ready_client()
            try:
                replies = self._pipeline(client, entries)
                break
            except _ERRORS.caught as exc:
                self._drop()
                lost = isinstance(exc, rex.ConnectionError) and _ERRORS.kind(exc) is TargetUnreachable
                if attempt == 1 and reused and lost:
                    continue  # a pooled connection the server closed while idle: one new connection
                raise _ERRORS.error(exc, where=self._where()) from exc
        failed = {i: reply for i, reply in enumerate(replies) if isinstance(reply, Exception)}
        if failed:
            delivered = frozenset(range(len(entries))) - frozenset(failed)
            first = next(iter(failed.values()))
            kind = _ERRORS.batch_kind(failed.values())
            raise kind(f"{self._where()}: {len(failed)} of {len(entries)} XADD refused: {first}",
                       delivered=delivered) from first
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            payload=[
                {"stream": stream, "id": _text(reply), "fields": {**fields, "event": event}}
                for (stream, fields), reply, event in zip(entries, replies, batch.events, strict=True)
            ],
            details={"messages": len(entries)},
        )

    def _entry(self, hook_id: int, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        stream = self.templates["stream"].render(event)
        if not stream:
            source = self.templates["stream"].source
            raise PayloadError(f"stream template {source!r} rendered an empty name", retryable=False)
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

    def _open_client(self) -> redis.Redis:
        host, port, db, tls = self.config.address()
        if not self.settings.HOOK_ALLOW_PRIVATE_TARGETS:
            address = str(vet_target("Redis", host, port)[0])
            host = host if tls else address
        return redis.Redis(
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

    def _shut(self, client: redis.Redis) -> None:
        client.connection_pool.disconnect()
        client.close()

    def _where(self) -> str:
        host, port, db, _tls = self.config.address()
        return f"Redis {host}:{port}/{db}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
