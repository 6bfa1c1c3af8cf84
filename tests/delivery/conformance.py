"""Checks every transport must pass, whatever its wire (after outpost's publisher_suite).

Reuse it from your transport's test module by subclassing `TransportConformance` in a class whose
name starts with `Test`; pytest then runs every `test_*` method below against your transport:

    from tests.delivery.conformance import Arrival, TransportConformance

    class TestKafkaConformance(TransportConformance):
        identity = "event_id"                    # what your transport stamps on each message

        @pytest.fixture
        def target(self, kafka_broker) -> Iterator[Any]:
            ...                                  # a fresh, empty target: unique topic/queue; tear it down after

        def make_transport(self, target: Any) -> Transport[Any]:
            ...                                  # a transport that delivers to `target`

        def make_unreachable_transport(self) -> Transport[Any]:
            ...                                  # same type, aimed at a loopback port nothing listens on

        def arrived(self, target: Any, count: int, timeout: float) -> list[Arrival]:
            ...                                  # poll (no sleeps) until >= count events arrived or the
                                                 # deadline passed; return ALL that arrived, in arrival order

        def is_closed(self, transport: Transport[Any]) -> bool:
            ...                                  # whether close() released the connection

What the suite expects of your side:
- `Arrival.event` is one event as the target received it, decoded from JSON; `Arrival.identity` is
  the id the transport stamped on it (`webhook-id` for HTTP = the batch id; AMQP `message_id` and the
  Kafka `event_id` header = the event's `event_id`); `Arrival.hook_id` the hook id header, as text.
- The target is FIFO for one producer (one queue, one partition): the suite proves "no extra
  copies" by sending a sentinel batch last and checking nothing else arrived before it.
- `Receipt.payload` of a send lists the events as sent; override `payload_events` if your
  transport's payload has another shape (HTTP GET, for example).
- `make_unreachable_transport()` must fail fast (a refused connection, not a timeout).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pytest

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.errors import TargetUnreachable

__all__ = ["HOOK_ID", "Arrival", "TransportConformance", "sample_batch", "sample_events"]

HOOK_ID = 17
TIMEOUT = 10.0


@dataclass(frozen=True)
class Arrival:
    """One event as it reached the target, with the identity and hook id the transport stamped on it."""

    event: dict[str, Any]
    identity: str
    hook_id: str | None


def sample_events(count: int) -> list[dict[str, Any]]:
    """Events shaped like the wire format, each with its own event_id, with non-ASCII text and a null, and a
    top-level field the engine does not know (Altcraft adds fields over its versions: delivered as sent)."""
    return [
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "open",
            "event_date": "2026-01-25T15:04:05.123Z",
            "account_id": 23,
            "list_id": 5,
            "profile_id": f"profile-{n}",
            "is_test": False,
            "event_data": {"campaign_id": 973, "resource_id": 3, "send_message_id": f"m-{n}"},
            "custom_data": {"name": "Jürgen ✓ 东京", "score": 1.5, "nothing": None, "tags": ["a", "b"]},
            "field_added_by_a_newer_platform": {"version": 2, "flags": [True, None], "big": 2**63},
        }
        for n in range(count)
    ]


def sample_batch(count: int, attempt: int = 1) -> Batch:
    return Batch(hook_id=HOOK_ID, batch_id=f"batch-{uuid.uuid4()}", attempt=attempt, events=sample_events(count))


class TransportConformance:
    """The checks; subclasses provide the target and the transport (see the module docstring)."""

    identity: ClassVar[Literal["batch_id", "event_id"]]

    @pytest.fixture
    def target(self) -> Any:
        raise NotImplementedError("a conformance subclass provides a `target` fixture")

    def make_transport(self, target: Any) -> Transport[Any]:
        raise NotImplementedError

    def make_unreachable_transport(self) -> Transport[Any]:
        raise NotImplementedError

    def arrived(self, target: Any, count: int, timeout: float) -> list[Arrival]:
        raise NotImplementedError

    def is_closed(self, transport: Transport[Any]) -> bool:
        raise NotImplementedError

    def payload_events(self, receipt: Receipt) -> list[dict[str, Any]]:
        """The events a receipt says were sent."""
        payload: list[dict[str, Any]] = receipt.payload
        return payload

    def expected_identity(self, batch: Batch, event: dict[str, Any]) -> str:
        return batch.batch_id if self.identity == "batch_id" else str(event["event_id"])

    def test_every_event_arrives_once_with_its_identity_and_hook_id(self, target: Any) -> None:
        batch = sample_batch(3)
        with self.make_transport(target) as transport:
            transport.send(batch)
        arrivals = self.arrived(target, 3, TIMEOUT)
        assert [a.event for a in arrivals] == batch.events
        assert [a.identity for a in arrivals] == [self.expected_identity(batch, e) for e in batch.events]
        assert {a.hook_id for a in arrivals} == {str(HOOK_ID)}

    def test_one_send_is_one_attempt_with_no_extra_copies(self, target: Any) -> None:
        first, second, sentinel = sample_batch(2), sample_batch(1), sample_batch(1)
        with self.make_transport(target) as transport:
            for batch in (first, second, sentinel):
                transport.send(batch)
        arrivals = self.arrived(target, 4, TIMEOUT)
        ids = [a.event["event_id"] for a in arrivals]
        assert ids == [e["event_id"] for b in (first, second, sentinel) for e in b.events]

    def test_the_receipt_payload_is_what_arrived(self, target: Any) -> None:
        batch = sample_batch(2)
        with self.make_transport(target) as transport:
            receipt = transport.send(batch)
        assert receipt.latency_ms >= 0
        assert self.payload_events(receipt) == [a.event for a in self.arrived(target, 2, TIMEOUT)]

    def test_a_retry_of_a_batch_carries_the_same_identity(self, target: Any) -> None:
        batch = sample_batch(1)
        retry = Batch(hook_id=batch.hook_id, batch_id=batch.batch_id, attempt=2, events=batch.events)
        with self.make_transport(target) as transport:
            transport.send(batch)
            transport.send(retry)
        arrivals = self.arrived(target, 2, TIMEOUT)
        assert arrivals[0].identity == arrivals[1].identity == self.expected_identity(batch, batch.events[0])

    def test_an_unreachable_target_raises_a_retryable_target_unreachable(self) -> None:
        with self.make_unreachable_transport() as transport, pytest.raises(TargetUnreachable) as caught:
            transport.send(sample_batch(1))
        assert caught.value.retryable
        assert caught.value.delivered == frozenset()
        assert caught.value.__cause__ is not None, "the library's own error is chained for debugging"

    def test_close_releases_the_connection_and_may_be_called_twice(self, target: Any) -> None:
        transport = self.make_transport(target)
        transport.send(sample_batch(1))
        transport.close()
        transport.close()
        assert self.is_closed(transport)

    def test_leaving_the_context_manager_closes_the_transport(self, target: Any) -> None:
        with self.make_transport(target) as transport:
            transport.send(sample_batch(1))
        assert self.is_closed(transport)
