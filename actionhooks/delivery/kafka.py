"""Kafka transport: one JSON message per event from an idempotent producer (acks=all).

One `send` produces the whole batch, then flushes until every delivery report arrived or the
attempt's deadline (HOOK_HTTP_TIMEOUT_SEC, also librdkafka's `message.timeout.ms`, so nothing of
a failed attempt is sent later behind the worker's back). Reports decide per event: failed events
raise a DeliveryError whose `delivered` lists the acked indexes, so a retry resends only the rest.
When librdkafka reports that every broker is down or authentication failed, the attempt fails at
once instead of waiting for the deadline.

The message key is the hook's `key` template (default "{{profile_id}}") rendered by
actionhooks.templating; catalog names (campaign_name...) render empty here, as a transport has no
catalog. An empty key is sent as no key (spread over partitions) rather than hashed to one partition.
Unless HOOK_ALLOW_PRIVATE_TARGETS is true, every bootstrap server goes through the SSRF guard
(delivery/ssrf.py) before a producer is created: a name with any non-public address is refused with
TargetForbidden. librdkafka resolves names itself and then connects to the brokers the cluster
advertises, so unlike HTTP and RabbitMQ this check cannot pin the connect to the vetted address.

The partitioner is murmur2_random, the Java client's, so the same key lands on the same partition
as from the platform's own Java producers.
"""

from __future__ import annotations

import functools
import time
from typing import Any, ClassVar

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from actionhooks.delivery.base import Batch, Receipt, SerialTransport
from actionhooks.delivery.config import KafkaDelivery
from actionhooks.delivery.errormap import Case, ErrorMap
from actionhooks.delivery.ssrf import vet_target
from actionhooks.delivery.wire import dumps
from actionhooks.errors import (
    DeliveryError,
    PayloadError,
    TargetRejected,
    TargetUnreachable,
)
from actionhooks.settings import Settings

__all__ = ["KafkaTransport"]

_UNREACHABLE = frozenset({
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT,
})
# librdkafka's errors → ours: an event's delivery report, a refused produce() or the client's error
# (KafkaError values, by code); KafkaException when the producer's configuration is refused.
_ERRORS = ErrorMap(
    Case(KafkaError, TargetUnreachable, when=lambda error: error.code() in _UNREACHABLE),
    Case(KafkaError, PayloadError, when=lambda error: error.code() == KafkaError.MSG_SIZE_TOO_LARGE),
    Case(KafkaException, TargetRejected, "Kafka producer configuration refused: {exc}", retryable=False),
)
# Client-wide errors (error_cb) after which waiting for the deadline cannot help.
_GIVE_UP = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
# Producers inherited over a fork: their librdkafka threads do not exist in the child, and destroying
# them there can hang, so the child keeps them unreferenced-but-alive instead of freeing them.
_inherited: list[Producer] = []


class KafkaTransport(SerialTransport[KafkaDelivery, Producer]):
    """To `topic`: value = the event as JSON, key = rendered `key`, headers event_id, hook_id, event_type.

    The client is the producer; an attempt's client error is the transport's, so sends are serial.
    """

    type: ClassVar[str] = "kafka"

    def __init__(self, config: KafkaDelivery, settings: Settings) -> None:
        super().__init__(config, settings)
        self._client_error: KafkaError | None = None

    def producer_config(self) -> dict[str, Any]:
        """librdkafka settings of the producer, from the hook's delivery config."""
        cfg = self.config
        conf: dict[str, Any] = {
            "bootstrap.servers": cfg.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": cfg.compression,
            "partitioner": "murmur2_random",
            "security.protocol": cfg.security_protocol.lower(),
            "message.timeout.ms": int(self.timeout * 1000),
            "client.id": "actionhooks",
            "error_cb": self._on_client_error,
        }
        if cfg.sasl_mechanism:
            conf["sasl.mechanism"] = cfg.sasl_mechanism
        if cfg.sasl_username is not None:
            conf["sasl.username"] = cfg.sasl_username
        if cfg.sasl_password is not None:
            conf["sasl.password"] = cfg.sasl_password
        return conf

    def _send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        producer = self._ready_client()
        self._client_error = None
        headers_base = [("hook_id", str(batch.hook_id).encode())]
        reports: dict[int, tuple[KafkaError | None, Message]] = {}
        produced: dict[int, tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = {}
        refused: dict[int, KafkaError] = {}  # refused by produce() itself, never queued
        for index, event in enumerate(batch.events):
            key = self._render_key(event)
            value = dumps(event)
            headers = [
                ("event_id", str(event.get("event_id", "")).encode()),
                *headers_base,
                ("event_type", str(event.get("event_type", "")).encode()),
            ]
            on_delivery = functools.partial(_record, reports, index)
            error = self._produce(producer, key, value, headers, on_delivery=on_delivery, deadline=deadline)
            if error is None:
                produced[index] = (key, value, headers)
            else:
                refused[index] = error
        self._wait(producer, reports, len(produced), deadline)

        failed = dict(refused)
        for index in produced:
            err = reports[index][0] if index in reports else None
            if index not in reports:
                failed[index] = KafkaError(KafkaError._MSG_TIMED_OUT, "no delivery report before the deadline")
            elif err is not None:
                failed[index] = err
        if failed:
            raise self._failure(failed, frozenset(produced) - frozenset(failed), len(batch.events))
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            payload=[
                {
                    "topic": self.config.topic,
                    "partition": reports[i][1].partition(),
                    "offset": reports[i][1].offset(),
                    "key": None if key is None else key.decode(),
                    "headers": {name: raw.decode() for name, raw in headers},
                    "value": batch.events[i],
                }
                for i, (key, _value, headers) in produced.items()
            ],
            details={"messages": len(produced)},
        )

    def _release(self) -> None:
        producer = self._own_client()
        if producer is not None:
            producer.flush(min(1.0, self.timeout))
        self._drop()

    def _shut(self, producer: Producer) -> None:
        """Stop the producer for good: nothing it still holds goes out later, and its threads stop reconnecting.

        Merely forgetting it is not enough: a producer that outlives its attempt keeps reconnecting to
        a broker that is down, and when the broker comes back it asks for the topic's metadata
        (which auto-creates topics on many brokers).
        """
        producer.purge()  # queued and in-flight: their reports say failed, so a retry sends them
        producer.poll(0)
        producer.close()

    def _abandon(self, producer: Producer) -> None:
        _inherited.append(producer)

    def _open_client(self) -> Producer:
        if not self.settings.HOOK_ALLOW_PRIVATE_TARGETS:
            self._vet_bootstrap_servers()
        try:
            return Producer(self.producer_config())
        except KafkaException as exc:
            raise _ERRORS.error(exc) from exc

    def _vet_bootstrap_servers(self) -> None:
        """Raise TargetForbidden when a bootstrap server resolves to a non-public address."""
        for host, port in self.config.servers():
            vet_target("Kafka bootstrap server", host, port)

    def _render_key(self, event: dict[str, Any]) -> bytes | None:
        key = self.templates["key"].render(event)
        return key.encode() if key else None

    def _produce(
        self, producer: Producer, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]],
        *, on_delivery: Any, deadline: float,
    ) -> KafkaError | None:
        """Queue one message; when the local queue is full, serve reports and try again until the deadline."""
        while True:
            try:
                producer.produce(self.config.topic, value, key, headers=headers, on_delivery=on_delivery)
                return None
            except BufferError:
                if time.monotonic() >= deadline:
                    return KafkaError(KafkaError._QUEUE_FULL, "local producer queue full until the deadline")
                producer.flush(min(0.1, deadline - time.monotonic()))
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                return error

    def _wait(self, producer: Producer, reports: dict[int, Any], expected: int, deadline: float) -> None:
        """Flush until every produced message has its report, the deadline passes, or the cluster gives up."""
        while len(reports) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            producer.flush(min(0.1, remaining))
            if self._client_error is not None:
                # Nothing of this attempt may go out later: drop what is still queued.
                producer.purge(in_queue=True, in_flight=False)
                producer.poll(0)
                break
        if len(reports) < expected or self._client_error is not None:
            # A producer that lived through a broker outage can stay stuck: the next attempt gets a new one.
            self._drop()

    def _on_client_error(self, error: KafkaError) -> None:
        if error.code() in _GIVE_UP or error.fatal():
            self._client_error = error

    def _failure(self, failed: dict[int, KafkaError], delivered: frozenset[int], total: int) -> DeliveryError:
        where = f"Kafka {self.config.bootstrap_servers} topic {self.config.topic!r}"
        cause = self._client_error or next(iter(failed.values()))
        text = f"{where}: {len(failed)} of {total} message(s) failed: {cause.str()}"
        kind = _ERRORS.batch_kind(failed.values())
        if self._client_error is not None:
            # The cluster gave up on the client: every broker down is unreachable (unless no event
            # could ever be sent), anything else (authentication, a fatal error) is a refusal.
            if self._client_error.code() != KafkaError._ALL_BROKERS_DOWN:
                kind = TargetRejected
            elif kind is TargetRejected:
                kind = TargetUnreachable
        error = kind(text, delivered=delivered)
        error.__cause__ = KafkaException(cause)
        return error


def _record(reports: dict[int, tuple[KafkaError | None, Message]], index: int, err: KafkaError | None,
            msg: Message) -> None:
    reports[index] = (err, msg)
