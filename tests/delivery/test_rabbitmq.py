"""RabbitMQ transports against the local broker (127.0.0.1:5672): what consumers receive, and failures."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
import pika.exceptions
import pytest

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import RabbitMQExchangeDelivery, RabbitMQQueueDelivery
from actionhooks.delivery.rabbitmq import RabbitMQExchangeTransport, RabbitMQQueueTransport
from actionhooks.errors import TargetForbidden, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings
from tests.delivery.brokers_fixtures import Rabbit, closed_loopback_port, rabbit
from tests.delivery.brokers_fixtures import sample_event as event
from tests.delivery.conformance import Arrival, TransportConformance

__all__ = ["rabbit"]  # the fixture, imported for pytest

SETTINGS = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=True)  # the brokers are on loopback

HOOK_ID = 17


def batch(*events: dict[str, Any]) -> Batch:
    return Batch(hook_id=HOOK_ID, batch_id=uuid.uuid4().hex, attempt=1, events=list(events))


def queue_transport(settings: Settings, queue: str = "", **config: Any) -> RabbitMQQueueTransport:
    cfg = RabbitMQQueueDelivery(type="rabbitmq_queue", queue=queue, **{"host": "127.0.0.1", **config})
    return RabbitMQQueueTransport(cfg, settings)


def exchange_transport(settings: Settings, exchange: str, **config: Any) -> RabbitMQExchangeTransport:
    cfg = RabbitMQExchangeDelivery(type="rabbitmq_exchange", exchange=exchange, **{"host": "127.0.0.1", **config})
    return RabbitMQExchangeTransport(cfg, settings)


def connections_become(name: str, count: int, timeout: float = 10.0) -> bool:
    """Whether the broker comes to list exactly `count` connections named `name` (closing is async)."""
    deadline = time.monotonic() + timeout
    while len(connections_named(name)) != count:
        if time.monotonic() > deadline:
            return False
    return True


def connections_named(name: str) -> list[str]:
    """Broker-side pids of the open connections whose client called itself `name`."""
    rows = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.splitlines()
    marker = '{"connection_name",' + json.dumps(name) + "}"
    return [row.split("\t", 1)[0] for row in rows if marker in row]


def test_each_event_becomes_one_persistent_json_message_with_identity_properties(rabbit: Rabbit) -> None:
    # Given a queue transport for a named queue
    queue = rabbit.name("q")
    events = [event(i) for i in range(3)]
    # When a batch of three events is sent
    with queue_transport(SETTINGS, queue) as transport:
        receipt = transport.send(batch(*events))
    # Then the queue holds three messages whose bodies are exactly the events, in order
    got = rabbit.messages(queue, 3)
    assert [json.loads(body) for _, _, body in got] == events
    for (method, props, _), sent in zip(got, events, strict=True):
        assert method.exchange == ""  # the default exchange
        assert method.routing_key == queue
        assert props.content_type == "application/json"
        assert props.delivery_mode == 2  # persistent
        assert props.message_id == sent["event_id"]
        assert props.headers == {"hook_id": HOOK_ID, "event_type": "open"}
    # And the receipt shows what was sent
    assert [m["body"] for m in receipt.payload] == events
    assert receipt.payload[0]["routing_key"] == queue
    assert receipt.payload[0]["properties"]["message_id"] == events[0]["event_id"]


def test_the_queue_is_declared_durable(rabbit: Rabbit) -> None:
    queue = rabbit.name("durable")
    with queue_transport(SETTINGS, queue) as transport:
        transport.send(batch(event()))
    # A non-durable redeclaration of a durable queue is refused with PRECONDITION_FAILED.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        rabbit.channel.queue_declare(queue, durable=False)
    assert refused.value.reply_code == 406
    rabbit.reopen()


def test_an_empty_queue_name_sends_each_event_to_the_queue_named_after_its_event_type(rabbit: Rabbit) -> None:
    # Given event types whose queues do not exist yet (unique names stand in for "open" and "click")
    opens, clicks = rabbit.name("open"), rabbit.name("click")
    events = [event(0, opens), event(1, clicks), event(2, opens)]
    # When one mixed batch is sent with queue ""
    with queue_transport(SETTINGS, "") as transport:
        transport.send(batch(*events))
    # Then each event went to its own type's queue
    assert [json.loads(b) for _, _, b in rabbit.messages(opens, 2)] == [events[0], events[2]]
    assert [json.loads(b) for _, _, b in rabbit.messages(clicks, 1)] == [events[1]]


def test_an_existing_queue_with_other_arguments_is_used_as_it_is(rabbit: Rabbit) -> None:
    # Given a consumer already declared the queue with arguments the transport does not know
    queue = rabbit.queue("args", **{"x-max-length": 100})
    # When the transport sends to it
    with queue_transport(SETTINGS, queue) as transport:
        transport.send(batch(event()))
    # Then the event arrives instead of a PRECONDITION_FAILED
    assert len(rabbit.messages(queue, 1)) == 1


def test_nacked_events_fail_and_the_error_names_the_ones_that_were_confirmed(rabbit: Rabbit) -> None:
    # Given a queue that takes two messages and refuses more (the broker nacks the rest)
    queue = rabbit.queue("full", **{"x-max-length": 2, "x-overflow": "reject-publish"})
    # When five events are sent
    with queue_transport(SETTINGS, queue) as transport, pytest.raises(TargetRejected) as failed:
        transport.send(batch(*(event(i) for i in range(5))))
    # Then the first two count as delivered, the rest are to be sent again
    assert failed.value.delivered == frozenset({0, 1})
    assert failed.value.retryable
    assert rabbit.depth(queue) == 2


def test_a_retry_resends_only_what_was_not_delivered(rabbit: Rabbit) -> None:
    # Given a length-limited queue that nacked part of a batch, then was drained by its consumer
    queue = rabbit.queue("retry", **{"x-max-length": 2, "x-overflow": "reject-publish"})
    events = [event(i) for i in range(3)]
    with queue_transport(SETTINGS, queue) as transport:
        with pytest.raises(TargetRejected) as failed:
            transport.send(batch(*events))
        first = [json.loads(b) for _, _, b in rabbit.messages(queue, 2)]
        # When the worker retries with the undelivered events only
        rest = [e for i, e in enumerate(events) if i not in failed.value.delivered]
        transport.send(batch(*rest))
    # Then every event arrived exactly once
    assert first + [json.loads(b) for _, _, b in rabbit.messages(queue, 1)] == events


def test_exchange_routing_key_is_list_id_dot_event_type_and_topic_bindings_select_by_it(rabbit: Rabbit) -> None:
    # Given a topic exchange with one queue bound to "7.*" and another to "*.open"
    exchange = rabbit.exchange("topic")
    rabbit.channel.exchange_declare(exchange, "topic", durable=True)
    list7, opens = rabbit.queue("list7"), rabbit.queue("opens")
    rabbit.channel.queue_bind(list7, exchange, "7.*")
    rabbit.channel.queue_bind(opens, exchange, "*.open")
    e7_open, e7_click, e8_open = event(0, "open"), event(1, "click"), event(2, "open", list_id=8)
    no_list = {k: v for k, v in event(3, "open").items() if k != "list_id"}
    # When the four events are sent through the exchange
    with exchange_transport(SETTINGS, exchange, exchange_type="topic") as transport:
        transport.send(batch(e7_open, e7_click, e8_open, no_list))
    # Then each queue got what its binding selects, with the routing key <list_id>.<event_type>
    got7 = rabbit.messages(list7, 2)
    assert [json.loads(b) for _, _, b in got7] == [e7_open, e7_click]
    assert [m.routing_key for m, _, _ in got7] == ["7.open", "7.click"]
    got_opens = rabbit.messages(opens, 3)
    assert [json.loads(b) for _, _, b in got_opens] == [e7_open, e8_open, no_list]
    assert [m.routing_key for m, _, _ in got_opens] == ["7.open", "8.open", ".open"]
    assert got_opens[0][1].headers == {"hook_id": HOOK_ID, "event_type": "open"}
    assert rabbit.depth(list7) == 0
    assert rabbit.depth(opens) == 0


def test_the_exchange_is_declared_with_the_configured_type_and_flags(rabbit: Rabbit) -> None:
    exchange = rabbit.exchange("declared")
    with exchange_transport(SETTINGS, exchange, exchange_type="topic", durable=True) as transport:
        transport.send(batch(event()))
    # A passive declaration finds it; a declaration as another type is refused
    rabbit.channel.exchange_declare(exchange, passive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        rabbit.channel.exchange_declare(exchange, "direct", durable=True)
    assert refused.value.reply_code == 406
    rabbit.reopen()


def test_a_message_the_exchange_routes_nowhere_is_not_a_failure(rabbit: Rabbit) -> None:
    # Given a direct exchange without any binding
    exchange = rabbit.exchange("unbound")
    with exchange_transport(SETTINGS, exchange) as transport:
        # When an event is sent, Then the attempt succeeds: routing is the exchange's decision
        receipt = transport.send(batch(event()))
    assert receipt.payload[0]["routing_key"] == "7.open"


def test_an_exchange_of_another_type_is_a_rejection_naming_the_broker_reason(rabbit: Rabbit) -> None:
    exchange = rabbit.exchange("clash")
    rabbit.channel.exchange_declare(exchange, "fanout", durable=True)
    with exchange_transport(SETTINGS, exchange) as transport, pytest.raises(TargetRejected) as failed:
        transport.send(batch(event()))
    assert "406" in failed.value.message
    assert "PRECONDITION_FAILED" in failed.value.message
    assert isinstance(failed.value.__cause__, pika.exceptions.ChannelClosedByBroker)


def test_a_closed_port_is_unreachable_and_retryable() -> None:
    closed_port = closed_loopback_port()
    transport = queue_transport(SETTINGS, "q", port=closed_port)
    with transport, pytest.raises(TargetUnreachable) as failed:
        transport.send(batch(event(), event()))
    assert failed.value.retryable
    assert failed.value.delivered == frozenset()
    assert f"127.0.0.1:{closed_port}" in failed.value.message
    assert isinstance(failed.value.__cause__, pika.exceptions.AMQPConnectionError)


GUARDED = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "10.0.0.7", "169.254.169.254", "100.64.0.1"])
@pytest.mark.parametrize("make", [queue_transport, lambda s, **c: exchange_transport(s, "x", **c)],
                         ids=["queue", "exchange"])
def test_a_broker_host_on_a_non_public_address_is_refused_before_any_connect_and_never_retried(
    host: str, make: Any
) -> None:
    # Given the SSRF guard is on and something listens where the host points on loopback
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        transport = make(GUARDED, host=host, port=listener.getsockname()[1])
        # When a batch is sent
        with transport, pytest.raises(TargetForbidden) as refused:
            transport.send(batch(event()))
        # Then it is refused, for good, naming the host and the setting that allows it
        assert not refused.value.retryable
        assert host in refused.value.message
        assert "HOOK_ALLOW_PRIVATE_TARGETS" in refused.value.message
        assert not transport.is_open
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_with_the_guard_on_an_unresolvable_host_is_unreachable_and_retryable() -> None:
    transport = queue_transport(GUARDED, "q", host="no-such-broker.invalid")
    with transport, pytest.raises(TargetUnreachable) as failed:
        transport.send(batch(event()))
    assert failed.value.retryable
    assert "no-such-broker.invalid" in failed.value.message


def test_wrong_credentials_are_a_rejection_not_an_unreachable_target() -> None:
    transport = queue_transport(SETTINGS, "q", password="wrong")
    with transport, pytest.raises(TargetRejected) as failed:
        transport.send(batch(event()))
    assert "ACCESS_REFUSED" in failed.value.message


def test_one_connection_serves_many_sends(rabbit: Rabbit) -> None:
    queue = rabbit.name("reuse")
    with queue_transport(SETTINGS, queue) as transport:
        for i in range(3):
            transport.send(batch(event(i)))
        assert len(connections_named(transport.connection_name)) == 1
    # And close() let it go
    assert connections_become(transport.connection_name, 0)
    assert rabbit.depth(queue) == 3


def test_a_connection_closed_by_the_broker_is_replaced_within_the_next_send(rabbit: Rabbit) -> None:
    # Given a transport whose connection the broker closed while it was idle
    queue = rabbit.name("reconnect")
    with queue_transport(SETTINGS, queue) as transport:
        transport.send(batch(event(0)))
        [pid] = connections_named(transport.connection_name)
        subprocess.run(["rabbitmqctl", "close_connection", pid, "test: forced close"], check=True,
                       capture_output=True, timeout=30)
        # When the next batch is sent, Then it is delivered over a new connection
        transport.send(batch(event(1)))
        assert connections_become(transport.connection_name, 1)
        assert connections_named(transport.connection_name) != [pid]
    assert [json.loads(b)["profile_id"] for _, _, b in rabbit.messages(queue, 2)] == ["profile-0", "profile-1"]


def test_sends_from_several_threads_on_one_transport_each_deliver_their_whole_batch(rabbit: Rabbit) -> None:
    # Given one cached transport that two drain tasks of a threads-pool worker use at the same moment
    queue = rabbit.name("threads")
    batches = [[event(i, profile_id=f"t{t}-{i}") for i in range(300)] for t in range(4)]
    with queue_transport(SETTINGS, queue) as transport, ThreadPoolExecutor(4) as pool:
        # When each thread sends its batch
        receipts = list(pool.map(lambda events: transport.send(batch(*events)), batches))
    # Then every batch is confirmed whole and every event is in the queue once
    assert [len(r.payload) for r in receipts] == [300] * 4
    got = sorted(json.loads(body)["profile_id"] for _, _, body in rabbit.messages(queue, 1200, timeout=20))
    assert got == sorted(e["profile_id"] for events in batches for e in events)
    assert rabbit.depth(queue) == 0


def test_close_is_idempotent_and_a_closed_transport_reconnects_on_the_next_send(rabbit: Rabbit) -> None:
    queue = rabbit.name("closed")
    transport = queue_transport(SETTINGS, queue)
    transport.close()  # never connected
    transport.send(batch(event(0)))
    transport.close()
    transport.close()
    transport.send(batch(event(1)))
    transport.close()
    assert rabbit.depth(queue) == 2


def test_a_thousand_events_are_confirmed_in_one_pipelined_attempt(
    rabbit: Rabbit, record_property: Any
) -> None:
    queue = rabbit.name("bulk")
    events = [event(i) for i in range(1000)]
    with queue_transport(SETTINGS, queue) as transport:
        transport.send(batch(event()))  # connect and declare outside the measurement
        started = time.perf_counter()
        receipt = transport.send(batch(*events))
        elapsed = time.perf_counter() - started
    record_property("rabbitmq_events_per_sec", round(len(events) / elapsed))
    assert len(receipt.payload) == 1000
    assert rabbit.depth(queue) == 1001


@pytest.mark.slow
@pytest.mark.stops_shared_service
def test_sending_recovers_after_a_rabbitmq_restart(rabbit: Rabbit) -> None:
    # Given a transport with an open connection
    queue = rabbit.queue("restart")
    rabbit.connection.close()
    with queue_transport(SETTINGS, queue) as transport:
        transport.send(batch(event(0)))
        # When RabbitMQ's application restarts (always started again, even if the test fails)
        try:
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        finally:
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        subprocess.run(["rabbitmqctl", "await_startup"], check=True, capture_output=True, timeout=120)
        # Then the next send delivers over a new connection
        transport.send(batch(event(1)))
    rabbit.connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    rabbit.reopen()
    assert [json.loads(b)["profile_id"] for _, _, b in rabbit.messages(queue, 2)] == ["profile-0", "profile-1"]


class _RabbitConformance(TransportConformance):
    identity = "event_id"

    def arrived(self, target: tuple[Rabbit, str], count: int, timeout: float) -> list[Arrival]:
        rabbit, queue = target
        got = rabbit.messages(queue, count, timeout)
        return [Arrival(json.loads(body), props.message_id, str(props.headers["hook_id"])) for _, props, body in got]

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, RabbitMQQueueTransport | RabbitMQExchangeTransport)
        return not transport.is_open and connections_become(transport.connection_name, 0)

    def payload_events(self, receipt: Receipt) -> list[dict[str, Any]]:
        return [message["body"] for message in receipt.payload]


class TestRabbitMQQueueConformance(_RabbitConformance):
    @pytest.fixture
    def target(self, rabbit: Rabbit) -> tuple[Rabbit, str]:
        return rabbit, rabbit.name("conformance")

    def make_transport(self, target: tuple[Rabbit, str]) -> Transport[Any]:
        return queue_transport(SETTINGS, target[1])

    def make_unreachable_transport(self) -> Transport[Any]:
        return queue_transport(SETTINGS, "q", port=closed_loopback_port())


class TestRabbitMQExchangeConformance(_RabbitConformance):
    @pytest.fixture
    def target(self, rabbit: Rabbit) -> tuple[Rabbit, str, str]:
        exchange = rabbit.exchange("conformance")
        rabbit.channel.exchange_declare(exchange, "topic", durable=True)
        queue = rabbit.queue("conformance")
        rabbit.channel.queue_bind(queue, exchange, "#")
        return rabbit, queue, exchange

    def make_transport(self, target: tuple[Rabbit, str, str]) -> Transport[Any]:
        return exchange_transport(SETTINGS, target[2], exchange_type="topic")

    def make_unreachable_transport(self) -> Transport[Any]:
        return exchange_transport(SETTINGS, "x", port=closed_loopback_port())

    def arrived(self, target: tuple[Rabbit, str, str], count: int, timeout: float) -> list[Arrival]:
        return super().arrived(target[:2], count, timeout)

