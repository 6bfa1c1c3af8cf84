"""NATS JetStream transport against the local nats-server (127.0.0.1:4222, shared: unique stream and
subject names) and a private `nats-server -js` for the restart test."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import StorageType

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import NatsDelivery
from actionhooks.delivery.nats import NatsTransport
from actionhooks.errors import PayloadError, TargetForbidden, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings
from tests.delivery.brokers_fixtures import closed_loopback_port
from tests.delivery.conformance import HOOK_ID, Arrival, TransportConformance, sample_batch, sample_events
from tests.delivery.servers import RetryingSender, private_server, wait_for

SETTINGS = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=True)
GUARDED = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=False)
T = TypeVar("T")


def transport(settings: Settings = SETTINGS, **config: Any) -> NatsTransport:
    cfg = NatsDelivery(type="nats", **{"servers": ["nats://127.0.0.1:4222"], **config})
    return NatsTransport(cfg, settings)


class JetStream:
    """The test's own JetStream client: streams with unique names and subjects, read back, deleted after."""

    def __init__(self, port: int = 4222) -> None:
        self.url = f"nats://127.0.0.1:{port}"
        self.streams: list[str] = []

    def _do(self, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
        async def main() -> T:
            nc = await nats.connect(self.url, allow_reconnect=False)
            try:
                return await work(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(main())

    def stream(self, **options: Any) -> tuple[str, str]:
        """A new file-backed stream capturing `<prefix>.>`; returns (stream name, subject prefix)."""
        token = uuid.uuid4().hex[:10]
        name, prefix = f"AH_TEST_{token}", f"ahtest.{token}"
        self._do(lambda js: js.add_stream(name=name, subjects=[prefix + ".>"], storage=StorageType.FILE, **options))
        self.streams.append(name)
        return name, prefix

    def messages(self, stream: str, count: int, timeout: float = 10.0) -> list[Any]:
        """Every message of `stream` once at least `count` are there (polled), in stream order."""
        wait_for(lambda: self.count(stream) >= count, f"{count} messages in {stream}", timeout, every=0.1)

        async def read(js: JetStreamContext) -> list[Any]:
            info = await js.stream_info(stream)
            return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]

        return self._do(read)

    def count(self, stream: str) -> int:
        async def messages(js: JetStreamContext) -> int:
            return (await js.stream_info(stream)).state.messages

        return self._do(messages)

    def close(self) -> None:
        async def delete(js: JetStreamContext) -> None:
            for name in self.streams:
                await js.delete_stream(name)

        if self.streams:
            self._do(delete)


@pytest.fixture
def jetstream() -> Iterator[JetStream]:
    client = JetStream()
    try:
        yield client
    finally:
        client.close()


def test_each_event_is_one_acked_message_with_nats_msg_id_and_identity_headers(jetstream: JetStream) -> None:
    stream, prefix = jetstream.stream()
    batch = sample_batch(3)
    with transport(subject=prefix + ".{{list_id}}.{{event_type}}") as nats_transport:
        receipt = nats_transport.send(batch)
    got = jetstream.messages(stream, 3)
    assert [json.loads(m.data) for m in got] == batch.events
    assert [m.subject for m in got] == [f"{prefix}.5.open"] * 3
    for message, event in zip(got, batch.events, strict=True):
        assert message.headers["Nats-Msg-Id"] == event["event_id"]
        assert message.headers["hook_id"] == str(HOOK_ID)
        assert message.headers["event_type"] == "open"
    assert [p["seq"] for p in receipt.payload] == [m.seq for m in got]
    assert {p["stream"] for p in receipt.payload} == {stream}


def test_a_resent_event_is_dropped_by_the_stream_as_a_duplicate(jetstream: JetStream) -> None:
    stream, prefix = jetstream.stream()
    batch = sample_batch(2)
    with transport(subject=prefix + ".x") as nats_transport:
        nats_transport.send(batch)
        receipt = nats_transport.send(Batch(batch.hook_id, batch.batch_id, 2, batch.events))
    assert [p["duplicate"] for p in receipt.payload] == [True, True]
    assert jetstream.count(stream) == 2


def test_a_subject_no_stream_listens_on_is_a_retryable_rejection() -> None:
    with transport(subject=f"ahtest.nostream.{uuid.uuid4().hex}") as nats_transport, pytest.raises(
        TargetRejected
    ) as failed:
        nats_transport.send(sample_batch(2))
    assert failed.value.retryable
    assert "no JetStream stream" in failed.value.message
    assert failed.value.delivered == frozenset()


def test_an_event_whose_subject_is_invalid_fails_alone(jetstream: JetStream) -> None:
    # Given the default-shaped template and one event without list_id ("<prefix>..open" is no subject)
    stream, prefix = jetstream.stream()
    events = sample_events(3)
    del events[1]["list_id"]
    with transport(subject=prefix + ".{{list_id}}.{{event_type}}") as nats_transport, pytest.raises(
        PayloadError
    ) as failed:
        nats_transport.send(Batch(HOOK_ID, "b", 1, events))
    assert failed.value.delivered == frozenset({0, 2})
    assert not failed.value.retryable
    assert f"{prefix}..open" in failed.value.message
    assert jetstream.count(stream) == 2


def test_a_message_over_the_streams_size_limit_is_not_delivered(jetstream: JetStream) -> None:
    stream, prefix = jetstream.stream(max_msg_size=2000)
    events = sample_events(2)
    events[0]["custom_data"]["big"] = "x" * 5000
    with transport(subject=prefix + ".x") as nats_transport, pytest.raises(TargetRejected) as failed:
        nats_transport.send(Batch(HOOK_ID, "b", 1, events))
    assert failed.value.delivered == frozenset({1})
    assert jetstream.count(stream) == 1


def test_one_connection_serves_many_sends_on_one_loop_thread_and_close_stops_both(jetstream: JetStream) -> None:
    stream, prefix = jetstream.stream()
    before = threading.active_count()
    nats_transport = transport(subject=prefix + ".x")
    for _ in range(3):
        nats_transport.send(sample_batch(2))
    nc = nats_transport._nc
    assert nc is not None
    assert threading.active_count() == before + 1
    nats_transport.send(sample_batch(1))
    assert nats_transport._nc is nc
    nats_transport.close()
    nats_transport.close()
    assert nc.is_closed
    assert not nats_transport.is_open
    wait_for(lambda: threading.active_count() == before, "the loop thread to end")
    assert jetstream.count(stream) == 7


def test_wrong_credentials_are_a_rejection(tmp_path: Path) -> None:
    def command(port: int, workdir: Path) -> list[str]:
        return ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(workdir),
                "--user", "ah", "--pass", "right"]

    with private_server("nats-server", command, tmp_path, "nats-auth") as server:
        servers = [f"nats://127.0.0.1:{server.port}"]
        with transport(servers=servers, username="ah", password="wrong") as nats_transport, pytest.raises(
            TargetRejected
        ) as failed:
            nats_transport.send(sample_batch(1))
        assert "refused" in failed.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.7", "169.254.169.254"])
def test_a_non_public_server_is_refused_before_any_connect(host: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        servers = [f"nats://{host}:{listener.getsockname()[1]}"]
        with transport(GUARDED, servers=servers) as nats_transport, pytest.raises(TargetForbidden) as refused:
            nats_transport.send(sample_batch(1))
        assert not refused.value.retryable
        assert "HOOK_ALLOW_PRIVATE_TARGETS" in refused.value.message
        with pytest.raises(BlockingIOError):
            listener.accept()


def nats_server_command(port: int, workdir: Path) -> list[str]:
    return ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(workdir / "js")]


@pytest.mark.slow
def test_a_nats_restart_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    with private_server("nats-server", nats_server_command, tmp_path, "nats") as server:
        jetstream = JetStream(server.port)
        stream, prefix = jetstream.stream()
        batches = [sample_batch(20) for _ in range(300)]
        nats_transport = transport(servers=[f"nats://127.0.0.1:{server.port}"], subject=prefix + ".{{event_type}}")
        with nats_transport, RetryingSender(nats_transport, batches) as sender:
            wait_for(lambda: sender.sent_batches >= 5, "the first batches")
            server.restart()
            sender.join()
        sent = {e["event_id"] for b in batches for e in b.events}
        stored = [m.headers["Nats-Msg-Id"] for m in jetstream.messages(stream, len(sent), timeout=30)]
        assert set(stored) == sent
        assert len(stored) == len(sent), "Nats-Msg-Id dropped the copies the retries sent"
        assert sender.failures, "the restart was seen by the sender (it happened mid-delivery)"
        # The lost connection is unreachable; while the restarted server loads its streams a publish may
        # find no stream listening (a rejection, as for a missing stream): retryable either way
        assert any(isinstance(f, TargetUnreachable) for f in sender.failures)
        assert all(f.retryable for f in sender.failures), sender.failures


class TestNatsConformance(TransportConformance):
    identity = "event_id"

    @pytest.fixture
    def target(self, jetstream: JetStream) -> tuple[JetStream, str, str]:
        stream, prefix = jetstream.stream()
        return jetstream, stream, prefix

    def test_a_retry_of_a_batch_carries_the_same_identity(self, target: tuple[JetStream, str, str]) -> None:
        """JetStream's form of the suite's check: the retry's copy carries the same Nats-Msg-Id, which the
        server proves by recognising it as a duplicate (and keeping one message)."""
        jetstream, stream, _ = target
        batch = sample_batch(1)
        retry = Batch(hook_id=batch.hook_id, batch_id=batch.batch_id, attempt=2, events=batch.events)
        with self.make_transport(target) as nats_transport:
            first = nats_transport.send(batch)
            second = nats_transport.send(retry)
        assert [p["duplicate"] for p in (*first.payload, *second.payload)] == [False, True]
        assert first.payload[0]["headers"]["Nats-Msg-Id"] == second.payload[0]["headers"]["Nats-Msg-Id"]
        [arrival] = self.arrived(target, 1, 10)
        assert arrival.identity == batch.events[0]["event_id"]
        assert jetstream.count(stream) == 1

    def make_transport(self, target: tuple[JetStream, str, str]) -> Transport[Any]:
        return transport(subject=target[2] + ".{{event_type}}")

    def make_unreachable_transport(self) -> Transport[Any]:
        return transport(servers=[f"nats://127.0.0.1:{closed_loopback_port()}"])

    def arrived(self, target: tuple[JetStream, str, str], count: int, timeout: float) -> list[Arrival]:
        jetstream, stream, _ = target
        return [Arrival(json.loads(m.data), m.headers["Nats-Msg-Id"], m.headers["hook_id"])
                for m in jetstream.messages(stream, count, timeout)]

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, NatsTransport)
        return not transport.is_open

    def payload_events(self, receipt: Receipt) -> list[dict[str, Any]]:
        return [p["data"] for p in receipt.payload]
