from __future__ import annotations

import threading
from typing import Any

import pytest

from actionhooks.delivery.base import Transport
from actionhooks.delivery.stub import StubTransport
from actionhooks.errors import DeliveryError, TargetRejected, TargetUnreachable
from tests.delivery.conformance import Arrival, TransportConformance, sample_batch


class TestStubConformance(TransportConformance):
    """The stub keeps the contract the real transports keep, so worker tests against it mean something."""

    identity = "batch_id"

    @pytest.fixture
    def target(self) -> StubTransport:
        return StubTransport()

    def make_transport(self, target: StubTransport) -> Transport[Any]:
        return target

    def make_unreachable_transport(self) -> Transport[Any]:
        stub = StubTransport()
        error = TargetUnreachable("connection refused")
        error.__cause__ = ConnectionRefusedError(111, "Connection refused")
        stub.fail_next(1, error)
        return stub

    def arrived(self, target: StubTransport, count: int, timeout: float) -> list[Arrival]:
        return [
            Arrival(event, batch.batch_id, str(batch.hook_id)) for batch in target.batches for event in batch.events
        ]

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, StubTransport)
        return transport.closed


def test_the_next_attempts_fail_as_told_then_deliveries_resume() -> None:
    stub = StubTransport()
    rejected = TargetRejected("503", status_code=503, retry_after=30)
    stub.fail_next(2, rejected)
    batch = sample_batch(2)
    for _ in range(2):
        with pytest.raises(TargetRejected) as caught:
            stub.send(batch)
        assert caught.value is rejected
    receipt = stub.send(batch)
    assert receipt.payload == batch.events
    assert stub.attempts == [batch, batch, batch]
    assert stub.batches == [batch]
    assert stub.events == batch.events


def test_queued_failures_are_used_in_order() -> None:
    stub = StubTransport()
    first, second = TargetUnreachable("down"), TargetRejected("500", status_code=500)
    stub.fail_next(1, first)
    stub.fail_next(1, second)
    raised = []
    for _ in range(2):
        with pytest.raises(DeliveryError) as caught:
            stub.send(sample_batch(1))
        raised.append(caught.value)
    assert raised == [first, second]


def test_threads_sharing_a_stub_lose_no_batch() -> None:
    stub = StubTransport()
    batches = [sample_batch(1) for _ in range(400)]

    def send(part: list[Any]) -> None:
        for batch in part:
            stub.send(batch)

    threads = [threading.Thread(target=send, args=(batches[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(b.batch_id for b in stub.batches) == sorted(b.batch_id for b in batches)


def test_a_negative_failure_count_is_refused() -> None:
    with pytest.raises(ValueError, match="times must not be negative"):
        StubTransport().fail_next(-1, TargetUnreachable("down"))
