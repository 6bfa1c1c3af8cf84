"""MQTT transport against the local Mosquitto (127.0.0.1:1883, shared: unique topics) and a private
mosquitto for the restart and credentials tests."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import MqttDelivery
from actionhooks.delivery.mqtt import MqttTransport
from actionhooks.errors import PayloadError, TargetForbidden, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings
from tests.delivery.brokers_fixtures import closed_loopback_port
from tests.delivery.conformance import HOOK_ID, Arrival, TransportConformance, sample_batch, sample_events
from tests.delivery.servers import RetryingSender, mosquitto_command, private_server, wait_for

SETTINGS = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=True)
GUARDED = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=False)


def transport(settings: Settings = SETTINGS, **config: Any) -> MqttTransport:
    cfg = MqttDelivery(type="mqtt", **{"host": "127.0.0.1", "port": 1883, **config})
    return MqttTransport(cfg, settings)


def unique_topic() -> str:
    return f"ahtest/{uuid.uuid4().hex[:10]}"


class Subscriber:
    """A QoS 1 subscriber with a persistent session (it gets what was published while it reconnected)."""

    def __init__(self, topic_filter: str, port: int = 1883) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ahtest-sub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        connect_props = Properties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 300
        self.client.connect("127.0.0.1", port, 30, clean_start=False, properties=connect_props)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscribed"

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def received(self, count: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        wait_for(lambda: len(self.messages) >= count, f"{count} MQTT messages", timeout)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def topic() -> str:
    return unique_topic()


@pytest.fixture
def subscriber(topic: str) -> Iterator[Subscriber]:
    sub = Subscriber(topic + "/#")
    try:
        yield sub
    finally:
        sub.close()


def props_of(message: mqtt.MQTTMessage) -> dict[str, str]:
    return dict(getattr(message.properties, "UserProperty", []) or [])


def test_each_event_is_one_qos1_message_with_identity_user_properties(topic: str, subscriber: Subscriber) -> None:
    batch = sample_batch(3)
    with transport(topic=topic + "/{{list_id}}/{{event_type}}") as mqtt_transport:
        receipt = mqtt_transport.send(batch)
    got = subscriber.received(3)
    assert [json.loads(m.payload) for m in got] == batch.events
    assert [m.topic for m in got] == [f"{topic}/5/open"] * 3
    assert [m.qos for m in got] == [1, 1, 1]
    assert [props_of(m) for m in got] == [
        {"event_id": e["event_id"], "hook_id": str(HOOK_ID), "event_type": "open"} for e in batch.events]
    assert got[0].properties.ContentType == "application/json"
    assert [p["topic"] for p in receipt.payload] == [f"{topic}/5/open"] * 3


def test_mqtt_3_1_1_sends_the_same_bodies_without_properties(topic: str, subscriber: Subscriber) -> None:
    batch = sample_batch(2)
    with transport(topic=topic + "/x", protocol="3.1.1") as mqtt_transport:
        mqtt_transport.send(batch)
    got = subscriber.received(2)
    assert [json.loads(m.payload) for m in got] == batch.events
    assert [props_of(m) for m in got] == [{}, {}]


def test_a_thousand_events_are_acked_in_one_pipelined_attempt(topic: str, subscriber: Subscriber) -> None:
    batch = sample_batch(1000)
    with transport(topic=topic + "/bulk") as mqtt_transport:
        receipt = mqtt_transport.send(batch)
    assert len(receipt.payload) == 1000
    assert {json.loads(m.payload)["event_id"] for m in subscriber.received(1000, 30)} == {
        e["event_id"] for e in batch.events}


def test_an_event_whose_topic_is_a_wildcard_fails_alone(topic: str, subscriber: Subscriber) -> None:
    events = sample_events(3)
    events[1]["event_type"] = "#"
    with transport(topic=topic + "/{{event_type}}") as mqtt_transport, pytest.raises(PayloadError) as failed:
        mqtt_transport.send(Batch(HOOK_ID, "b", 1, events))
    assert failed.value.delivered == frozenset({0, 2})
    assert not failed.value.retryable
    assert len(subscriber.received(2)) == 2


def test_the_connection_is_reused_and_replaced_when_the_broker_closed_it(topic: str, subscriber: Subscriber) -> None:
    with transport(topic=topic + "/x") as mqtt_transport:
        mqtt_transport.send(sample_batch(1))
        first = mqtt_transport._client
        mqtt_transport.send(sample_batch(1))
        assert mqtt_transport._client is first
        # A second client with the same id makes the broker disconnect the first ("session taken over").
        intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=mqtt_transport.client_id, protocol=mqtt.MQTTv5)
        intruder.connect("127.0.0.1", 1883)
        intruder.loop(1)
        intruder.disconnect()
        mqtt_transport.send(sample_batch(1))
        assert mqtt_transport._client is not first
    assert not mqtt_transport.is_open
    assert len(subscriber.received(3)) == 3


def test_wrong_credentials_are_a_rejection(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("")
    with private_server("mosquitto", mosquitto_command(f"allow_anonymous false\npassword_file {tmp_path}/passwd\n"),
                        tmp_path, "mosquitto-auth") as server:
        with transport(port=server.port, username="ah", password="wrong") as mqtt_transport, pytest.raises(
            TargetRejected
        ) as failed:
            mqtt_transport.send(sample_batch(1))
        assert "refused" in failed.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "10.0.0.7", "169.254.169.254"])
def test_a_non_public_host_is_refused_before_any_connect(host: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        with transport(GUARDED, host=host, port=listener.getsockname()[1]) as mqtt_transport, pytest.raises(
            TargetForbidden
        ) as refused:
            mqtt_transport.send(sample_batch(1))
        assert not refused.value.retryable
        assert "HOOK_ALLOW_PRIVATE_TARGETS" in refused.value.message
        with pytest.raises(BlockingIOError):
            listener.accept()


@pytest.mark.slow
def test_a_mosquitto_restart_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    with private_server("mosquitto", mosquitto_command(), tmp_path, "mosquitto") as server:
        topic = unique_topic()
        subscriber = Subscriber(topic + "/#", server.port)
        try:
            batches = [sample_batch(20) for _ in range(150)]
            mqtt_transport = transport(port=server.port, topic=topic + "/{{event_type}}")
            with mqtt_transport, RetryingSender(mqtt_transport, batches) as sender:
                wait_for(lambda: sender.sent_batches >= 5, "the first batches")
                server.restart()
                sender.join()
            sent = {e["event_id"] for b in batches for e in b.events}
            wait_for(lambda: {props_of(m)["event_id"] for m in subscriber.received(0)} >= sent,
                     "every event at the subscriber", timeout=60)
            assert sender.failures, "the restart was seen by the sender (it happened mid-delivery)"
            assert all(isinstance(f, TargetUnreachable) for f in sender.failures)
        finally:
            subscriber.close()


class TestMqttConformance(TransportConformance):
    identity = "event_id"

    @pytest.fixture
    def target(self, topic: str, subscriber: Subscriber) -> tuple[str, Subscriber]:
        return topic, subscriber

    def make_transport(self, target: tuple[str, Subscriber]) -> Transport[Any]:
        return transport(topic=target[0] + "/{{event_type}}")

    def make_unreachable_transport(self) -> Transport[Any]:
        return transport(port=closed_loopback_port())

    def arrived(self, target: tuple[str, Subscriber], count: int, timeout: float) -> list[Arrival]:
        return [Arrival(json.loads(m.payload), props_of(m)["event_id"], props_of(m)["hook_id"])
                for m in target[1].received(count, timeout)]

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, MqttTransport)
        return not transport.is_open

    def payload_events(self, receipt: Receipt) -> list[dict[str, Any]]:
        return [p["payload"] for p in receipt.payload]
