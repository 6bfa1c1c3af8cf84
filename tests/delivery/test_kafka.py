"""Kafka transport against the Kafka-compatible test broker (Tansu, scripts/kafka_broker.py)."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import ValidationError

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import KafkaDelivery
from actionhooks.delivery.kafka import KafkaTransport
from actionhooks.errors import PayloadError, TargetForbidden, TargetUnreachable
from actionhooks.settings import Settings
from tests.delivery.brokers_fixtures import closed_loopback_port, kafka_bootstrap, unique
from tests.delivery.brokers_fixtures import sample_event as event
from tests.delivery.conformance import Arrival, TransportConformance

__all__ = ["kafka_bootstrap"]  # the fixture, imported for pytest

HOOK_ID = 17
SETTINGS = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=True)  # the brokers are on loopback


def batch(*events: dict[str, Any]) -> Batch:
    return Batch(hook_id=HOOK_ID, batch_id=uuid.uuid4().hex, attempt=1, events=list(events))


def transport(bootstrap: str, topic: str, settings: Settings = SETTINGS, **config: Any) -> KafkaTransport:
    return KafkaTransport(KafkaDelivery(type="kafka", bootstrap_servers=bootstrap, topic=topic, **config), settings)


def create_topic(bootstrap: str, partitions: int = 1, name: str | None = None) -> str:
    name = name or unique("topic")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=10)
    return name


def consume(bootstrap: str, topic: str, count: int, timeout: float = 15.0) -> list[Any]:
    """The first `count` messages of `topic`, polled with a deadline.

    Partitions are assigned, not subscribed: no group join to wait for (seconds on this broker).
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": unique("group"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    })
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            assert time.monotonic() < deadline, f"expected {count} message(s) in {topic}, got {len(got)}"
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got.append(msg)
        return got
    finally:
        consumer.close()


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    return create_topic(kafka_bootstrap)


def test_each_event_becomes_one_message_with_the_event_as_json_value_and_identity_headers(
    kafka_bootstrap: str, topic: str
) -> None:
    events = [event(i) for i in range(3)]
    with transport(kafka_bootstrap, topic) as kafka:
        receipt = kafka.send(batch(*events))
    got = consume(kafka_bootstrap, topic, 3)
    assert [orjson.loads(m.value()) for m in got] == events
    for msg, sent in zip(got, events, strict=True):
        assert dict(msg.headers()) == {
            "event_id": sent["event_id"].encode(), "hook_id": b"17", "event_type": b"open",
        }
        assert msg.key() == sent["profile_id"].encode()  # the default key template {{profile_id}}
    assert [m["value"] for m in receipt.payload] == events
    assert [m["offset"] for m in receipt.payload] == [0, 1, 2]


def test_the_key_template_is_rendered_per_event(kafka_bootstrap: str, topic: str) -> None:
    events = [event(0), event(1, list_id=9)]
    with transport(kafka_bootstrap, topic, key="{{list_id}}-{{event_type}}") as kafka:
        kafka.send(batch(*events))
    assert [m.key() for m in consume(kafka_bootstrap, topic, 2)] == [b"7-open", b"9-open"]


def test_an_event_without_the_key_field_is_sent_without_a_key(kafka_bootstrap: str, topic: str) -> None:
    anonymous = {k: v for k, v in event().items() if k != "profile_id"}
    with transport(kafka_bootstrap, topic) as kafka:
        receipt = kafka.send(batch(anonymous))
    assert receipt.payload[0]["key"] is None
    assert consume(kafka_bootstrap, topic, 1)[0].key() is None


def test_the_same_key_always_lands_on_the_same_partition(kafka_bootstrap: str) -> None:
    # Given a topic with four partitions
    topic = create_topic(kafka_bootstrap, partitions=4)
    events = [event(i % 5) for i in range(40)]  # five profiles, eight events each
    # When the events are sent in two batches
    with transport(kafka_bootstrap, topic) as kafka:
        kafka.send(batch(*events[:20]))
        kafka.send(batch(*events[20:]))
    # Then each profile's events share one partition, in order, and the profiles use several partitions
    partitions: dict[bytes, set[int]] = {}
    order: dict[bytes, list[str]] = {}
    for msg in consume(kafka_bootstrap, topic, 40):
        partitions.setdefault(msg.key(), set()).add(msg.partition())
        order.setdefault(msg.key(), []).append(orjson.loads(msg.value())["event_id"])
    assert all(len(p) == 1 for p in partitions.values())
    assert len(set().union(*partitions.values())) > 1
    for key, ids in order.items():
        assert ids == [e["event_id"] for e in events if e["profile_id"].encode() == key]


def test_compression_and_idempotence_are_asked_of_librdkafka(kafka_bootstrap: str, topic: str) -> None:
    kafka = transport(kafka_bootstrap, topic, compression="zstd")
    conf = kafka.producer_config()
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["compression.type"] == "zstd"
    with kafka:
        kafka.send(batch(event()))
    assert orjson.loads(consume(kafka_bootstrap, topic, 1)[0].value())["profile_id"] == "profile-0"


def test_sasl_settings_are_mapped_to_librdkafka_names(kafka_bootstrap: str) -> None:
    kafka = transport(
        kafka_bootstrap, "t", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="user", sasl_password="secret",
    )
    conf = kafka.producer_config()
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("sasl_ssl", "SCRAM-SHA-512")
    assert (conf["sasl.username"], conf["sasl.password"]) == ("user", "secret")


def test_a_closed_port_is_unreachable_retryable_and_fails_before_the_deadline() -> None:
    port = closed_loopback_port()
    started = time.monotonic()
    with transport(f"127.0.0.1:{port}", "t", SETTINGS.model_copy(update={"HOOK_HTTP_TIMEOUT_SEC": 30})) as kafka:
        with pytest.raises(TargetUnreachable) as failed:
            kafka.send(batch(event(), event()))
        assert not kafka.is_open  # the next attempt starts with a new producer
    assert time.monotonic() - started < 10
    assert failed.value.retryable
    assert failed.value.delivered == frozenset()
    assert isinstance(failed.value.__cause__, KafkaException)


def test_a_failed_attempt_leaves_no_producer_behind_that_reconnects_later() -> None:
    # Given an attempt that failed because nothing listens on the broker's address
    port = closed_loopback_port()
    with transport(f"127.0.0.1:{port}", "t") as kafka, pytest.raises(TargetUnreachable) as failed:
        kafka.send(batch(event()))
    # When a broker comes up on that address (the error, and its traceback, are still held)
    assert failed.value.retryable
    with socket.create_server(("127.0.0.1", port)) as listener:
        listener.settimeout(3)  # librdkafka retries a refused connect within a second
        # Then nothing of the failed attempt connects to it
        with pytest.raises(TimeoutError):
            listener.accept()


GUARDED = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=False)


@pytest.mark.parametrize("private", ["127.0.0.1", "localhost", "[::1]", "192.168.1.20", "169.254.169.254"])
def test_a_bootstrap_server_on_a_non_public_address_is_refused_before_any_connect_and_never_retried(
    private: str,
) -> None:
    # Given the SSRF guard is on, something listens on loopback, and one of two servers is not public
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        servers = f"8.8.8.8:9092,{private}:{listener.getsockname()[1]}"
        # When a batch is sent
        with transport(servers, "t", GUARDED) as kafka, pytest.raises(TargetForbidden) as refused:
            kafka.send(batch(event()))
        # Then it is refused, for good, before a producer exists, naming the server and the setting
        assert not refused.value.retryable
        assert private.strip("[]") in refused.value.message
        assert "HOOK_ALLOW_PRIVATE_TARGETS" in refused.value.message
        assert not kafka.is_open
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_with_the_guard_on_an_unresolvable_bootstrap_server_is_unreachable_and_retryable() -> None:
    with transport("no-such-broker.invalid:9092", "t", GUARDED) as kafka, pytest.raises(TargetUnreachable) as failed:
        kafka.send(batch(event()))
    assert failed.value.retryable
    assert "no-such-broker.invalid" in failed.value.message


@pytest.mark.parametrize("servers", ["k:", "k:x", "k:0", "k:70000", "k1:9092,,k2:9092", ":9092"])
def test_a_malformed_bootstrap_server_list_is_refused_naming_the_field(servers: str) -> None:
    with pytest.raises(ValidationError) as refused:
        KafkaDelivery(type="kafka", bootstrap_servers=servers, topic="t")
    [error] = refused.value.errors()
    assert error["loc"] == ("bootstrap_servers",)
    assert "host:port" in error["msg"]


def test_bootstrap_servers_accept_names_ipv6_default_ports_and_protocol_prefixes() -> None:
    cfg = KafkaDelivery(type="kafka", bootstrap_servers="k1:9093, [2001:db8::1]:9094,k2,PLAINTEXT://k3:1", topic="t")
    assert cfg.servers() == [("k1", 9093), ("2001:db8::1", 9094), ("k2", 9092), ("k3", 1)]


def test_a_message_over_the_size_limit_is_a_payload_error_and_the_others_are_delivered(
    kafka_bootstrap: str, topic: str
) -> None:
    small, huge = event(0), event(1, custom_data={"blob": "x" * 1_100_000})  # over message.max.bytes (1 MB)
    with transport(kafka_bootstrap, topic) as kafka, pytest.raises(PayloadError) as failed:
        kafka.send(batch(small, huge))
    assert failed.value.delivered == frozenset({0})
    assert not failed.value.retryable
    assert orjson.loads(consume(kafka_bootstrap, topic, 1)[0].value()) == small


def test_a_thousand_events_in_one_attempt(kafka_bootstrap: str, record_property: Any) -> None:
    topic = create_topic(kafka_bootstrap, partitions=3)
    events = [event(i % 50) for i in range(1000)]
    with transport(kafka_bootstrap, topic) as kafka:
        kafka.send(batch(event()))  # connect outside the measurement
        started = time.perf_counter()
        receipt = kafka.send(batch(*events))
        record_property("kafka_events_per_sec", round(len(events) / (time.perf_counter() - started)))
    assert [m["value"] for m in receipt.payload] == events
    assert len(consume(kafka_bootstrap, topic, 1001)) == 1001


class TestKafkaConformance(TransportConformance):
    identity = "event_id"

    @pytest.fixture
    def target(self, kafka_bootstrap: str) -> tuple[str, str]:
        return kafka_bootstrap, create_topic(kafka_bootstrap)

    def make_transport(self, target: tuple[str, str]) -> Transport[Any]:
        return transport(*target)

    def make_unreachable_transport(self) -> Transport[Any]:
        return transport(f"127.0.0.1:{closed_loopback_port()}", "t")

    def arrived(self, target: tuple[str, str], count: int, timeout: float) -> list[Arrival]:
        arrivals = []
        for m in consume(*target, count, timeout):
            headers = {name: raw.decode() for name, raw in m.headers()}
            arrivals.append(Arrival(orjson.loads(m.value()), headers["event_id"], headers["hook_id"]))
        return arrivals

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, KafkaTransport)
        return not transport.is_open

    def payload_events(self, receipt: Receipt) -> list[dict[str, Any]]:
        return [message["value"] for message in receipt.payload]
