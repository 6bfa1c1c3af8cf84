"""MQTT transport: one PUBLISH per event at QoS 1, every PUBACK awaited, the batch pipelined.

The body is the event as JSON. With MQTT 5 (the default) each message also carries user properties
`event_id`, `hook_id` and `event_type` and content type `application/json`; MQTT 3.1.1 has no
properties, so there the event's own `event_id` field is its identity. The topic is the hook's
`topic` template (default `actionhooks/{{list_id}}/{{event_type}}`); a rendered topic MQTT cannot
publish to (empty, wildcards `+` `#`, NUL, over 65,535 bytes) fails that event alone as a
PayloadError. An MQTT 5 PUBACK with a failure reason (not authorized, quota exceeded, topic name
invalid...) fails that event as TargetRejected; "no matching subscribers" is a success, as the
broker took the message.

paho-mqtt's network loop is driven inside `send` (no background thread, like the RabbitMQ
transport): publish everything, then run the loop until every PUBACK arrived or the attempt's
deadline (HOOK_HTTP_TIMEOUT_SEC) passed. In flight at once: as many as the broker's CONNACK allows
(Receive Maximum), else all. paho's own reconnect and re-publish are not used: a connection that
fails is dropped, what was acked counts as delivered (`delivered` of the raised error), and the
retry publishes the rest on a new connection (clean session). A cached connection the broker
closed meanwhile (the keepalive is 60 s and nothing pings between sends) is replaced once within
the call.

Unless HOOK_ALLOW_PRIVATE_TARGETS is true, the host goes through the SSRF guard before every
connect and the socket connects to the vetted address; TLS still checks the certificate against
the host name. Proxies from the environment are never used.
"""

from __future__ import annotations

import copy
import itertools
import os
import socket
import ssl
import time
import uuid
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from actionhooks.delivery.base import Batch, Receipt, SerialTransport
from actionhooks.delivery.config import MqttDelivery
from actionhooks.delivery.errormap import Case, ErrorMap
from actionhooks.delivery.ssrf import vet_target
from actionhooks.delivery.wire import dumps
from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["MqttTransport"]

_KEEPALIVE_SEC = 60
_LOOP_SLICE_SEC = 0.1
_TOPIC_MAX_BYTES = 65_535
_MQTT_MAX_INFLIGHT = 65_535  # the protocol's Receive Maximum when a broker announces none
_client_numbers = itertools.count(1)
_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)
_PUBLISH_PROPERTIES.ContentType = "application/json"


class _Lost(Exception):
    """The connection failed or closed during the attempt (paho reports error codes, not exceptions)."""


class _Refused(Exception):
    """The broker answered CONNECT with a failure reason (bad credentials, not authorized...)."""


class _Timeout(Exception):
    """The attempt's deadline passed."""


# paho's failures (it reports error codes, which the transport raises as the exceptions above) → ours.
_ERRORS = ErrorMap(
    Case(_Refused, TargetRejected, "{where} refused the connection: {exc}"),
    Case((_Timeout, _Lost), TargetUnreachable, "{where}: {exc}"),
    Case(OSError, TargetUnreachable),  # connect, TLS, a socket error
    Case(ReasonCode, TargetRejected),  # a PUBACK's failure reason (not authorized, quota exceeded...)
)


class _PinnedClient(mqtt.Client):
    """paho's Client, connecting its TCP socket to a vetted address (None: the host) and never via a proxy."""

    connect_address: str | None = None

    def _create_socket_connection(self) -> socket.socket:
        address = self.connect_address or self._host
        return socket.create_connection((address, self._port), timeout=self._connect_timeout)


class MqttTransport(SerialTransport[MqttDelivery, _PinnedClient]):
    """To `topic` at QoS 1; MQTT 5 user properties event_id, hook_id, event_type."""

    type: ClassVar[str] = "mqtt"

    def __init__(self, config: MqttDelivery, settings: Settings) -> None:
        super().__init__(config, settings)
        # The client id: unique per transport (a broker disconnects the older of two equal ids).
        self.client_id = f"actionhooks-{os.getpid()}-{next(_client_numbers)}-{uuid.uuid4().hex[:8]}"
        self._connack: ReasonCode | None = None
        self._outstanding: dict[int, int] = {}  # message id -> event index
        self._acked: set[int] = set()
        self._rejected: dict[int, ReasonCode] = {}

    @property
    def v5(self) -> bool:
        return self.config.protocol == "5"

    def _send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        messages, refused = self._messages(batch)
        self._acked, self._rejected = set(), {}
        pending = [i for i in range(len(messages)) if i not in refused]
        for attempt in (1, 2):
            reused = self._own_client() is not None
            try:
                self._publish(messages, [i for i in pending if i not in self._acked], deadline)
                break
            except _ERRORS.caught as exc:
                self._drop()
                lost = isinstance(exc, _Lost | OSError)
                if attempt == 1 and reused and lost and time.monotonic() < deadline:
                    continue  # a cached connection the broker had closed: one new connection
                raise _ERRORS.error(exc, delivered=frozenset(self._acked), where=self._where()) from exc
        failed: dict[int, Any] = {**refused, **self._rejected}
        if failed:
            raise self._failure(failed, len(messages))
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            payload=[
                {"topic": topic, "qos": 1, "user_properties": dict(_user_properties(props)), "payload": event}
                for (topic, _body, props), event in zip(messages, batch.events, strict=True)
            ],
            details={"messages": len(messages)},
        )

    def _messages(self, batch: Batch) -> tuple[list[tuple[str, bytes, Properties | None]], dict[int, PayloadError]]:
        messages: list[tuple[str, bytes, Properties | None]] = []
        refused: dict[int, PayloadError] = {}
        for index, event in enumerate(batch.events):
            topic = self.templates["topic"].render(event)
            props = None
            if self.v5:
                props = copy.copy(_PUBLISH_PROPERTIES)  # Properties() itself costs ~0.15 ms (its name tables)
                props.UserProperty = [
                    ("event_id", str(event.get("event_id", ""))),
                    ("hook_id", str(batch.hook_id)),
                    ("event_type", str(event.get("event_type", ""))),
                ]
            messages.append((topic, dumps(event), props))
            if not topic or "+" in topic or "#" in topic or "\0" in topic or len(topic.encode()) > _TOPIC_MAX_BYTES:
                refused[index] = PayloadError(
                    f"topic {topic!r} (from template {self.templates['topic'].source!r}) cannot be published to: "
                    "empty, a wildcard (+ #), NUL, or over 65,535 bytes",
                    retryable=False,
                )
        return messages, refused

    def _publish(self, messages: list[tuple[str, bytes, Properties | None]], indexes: list[int],
                 deadline: float) -> None:
        client = self._connected(deadline)
        self._outstanding = {}
        for index in indexes:
            topic, body, props = messages[index]
            info = client.publish(topic, body, qos=1, properties=props)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,):
                raise _Lost(mqtt.error_string(info.rc))
            self._outstanding[info.mid] = index
        self._loop_until(client, lambda: not self._outstanding, deadline, "PUBACKs")

    def _connected(self, deadline: float) -> _PinnedClient:
        client = self._own_client()
        if client is not None:
            rc = client.loop(0)  # read what came while idle: a DISCONNECT or EOF shows here
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client.is_connected():
                return client
            raise _Lost(f"the cached connection was closed ({mqtt.error_string(rc)})")
        cfg = self.config
        client = _PinnedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else True,
        )
        client.connect_timeout = max(0.001, deadline - time.monotonic())
        client.max_inflight_messages_set(_MQTT_MAX_INFLIGHT)
        client.max_queued_messages_set(0)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set_context(ssl.create_default_context())
        if not self.settings.HOOK_ALLOW_PRIVATE_TARGETS:
            client.connect_address = str(vet_target("MQTT", cfg.host, cfg.port, frozenset(self._acked))[0])
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        self._connack = None
        self._adopt(client)  # from now on a failure closes its socket
        if self.v5:
            client.connect(cfg.host, cfg.port, _KEEPALIVE_SEC, clean_start=True)
        else:
            client.connect(cfg.host, cfg.port, _KEEPALIVE_SEC)
        self._loop_until(client, lambda: self._connack is not None, deadline, "CONNACK")
        connack = self._connack
        if connack is None:  # _loop_until returns once it came: a paho callback went wrong
            raise _Lost("no CONNACK received")
        if connack.is_failure:
            raise _Refused(str(connack))
        return client

    def _loop_until(self, client: _PinnedClient, done: Any, deadline: float, what: str) -> None:
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout(f"timed out after {self.timeout:g} s waiting for {what}")
            rc = client.loop(min(_LOOP_SLICE_SEC, remaining))
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                if self._connack is not None and self._connack.is_failure:
                    return  # the broker refused CONNECT and closed: reported by the caller
                raise _Lost(mqtt.error_string(rc))

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        self._connack = reason
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        if receive_maximum:
            # paho does not apply the broker's Receive Maximum itself, and its setter refuses an open
            # connection: set the limit before anything is published on it.
            client._max_inflight_messages = min(_MQTT_MAX_INFLIGHT, int(receive_maximum))

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        index = self._outstanding.pop(mid, None)
        if index is None:
            return
        if reason.is_failure:
            self._rejected[index] = reason
        else:
            self._acked.add(index)

    def _drop(self) -> None:
        self._outstanding = {}
        super()._drop()

    def _shut(self, client: _PinnedClient) -> None:
        """Disconnect, and close the socket even when the DISCONNECT could not be written."""
        sock = client.socket()
        try:
            if client.is_connected():
                client.disconnect()
                client.loop(0)  # writes the DISCONNECT
        except (OSError, ValueError):
            pass
        finally:
            if sock is not None:
                sock.close()

    def _where(self) -> str:
        return f"MQTT {self.config.host}:{self.config.port}"

    def _failure(self, failed: dict[int, Any], total: int) -> DeliveryError:
        first = next(iter(failed.values()))
        cause = first.message if isinstance(first, PayloadError) else f"PUBACK {first}"
        text = f"{self._where()}: {len(failed)} of {total} message(s) not delivered: {cause}"
        return _ERRORS.batch_kind(failed.values())(text, delivered=frozenset(self._acked))


def _user_properties(props: Properties | None) -> list[tuple[str, str]]:
    return list(getattr(props, "UserProperty", []) or [])
