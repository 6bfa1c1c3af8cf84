"""Redis Streams transport against the local Redis (127.0.0.1:6379, shared: unique stream names) and a
private redis-server for the restart test."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import RedisStreamDelivery
from actionhooks.delivery.redis_stream import RedisStreamTransport
from actionhooks.errors import PayloadError, TargetForbidden, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings
from tests.delivery.brokers_fixtures import closed_loopback_port
from tests.delivery.conformance import HOOK_ID, Arrival, TransportConformance, sample_batch, sample_events
from tests.delivery.servers import RetryingSender, private_server, wait_for

SETTINGS = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=True)
GUARDED = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=False)


def transport(settings: Settings = SETTINGS, **config: Any) -> RedisStreamTransport:
    cfg = RedisStreamDelivery(type="redis_stream", **{"url": "redis://127.0.0.1:6379/0", **config})
    return RedisStreamTransport(cfg, settings)


class Streams:
    """The test's own client: unique stream names, reading them, deleting every name it handed out."""

    def __init__(self, port: int = 6379) -> None:
        self.client = redis.Redis(port=port)
        self.names: list[str] = []

    def name(self, prefix: str = "s") -> str:
        name = f"ah-test-{prefix}-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def entries(self, stream: str, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
        """Every entry of `stream` once at least `count` are there (polled), fields decoded."""
        got: list[Any] = []

        def enough() -> bool:
            got[:] = self.client.xrange(stream)
            return len(got) >= count

        wait_for(enough, f"{count} entries in {stream}", timeout)
        return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in got]

    def close(self) -> None:
        if self.names:
            self.client.delete(*self.names)
        self.client.close()


@pytest.fixture
def streams() -> Iterator[Streams]:
    client = Streams()
    try:
        yield client
    finally:
        client.close()


def test_each_event_is_one_entry_with_the_event_and_its_identity_fields(streams: Streams) -> None:
    stream = streams.name()
    batch = sample_batch(3)
    with transport(stream=stream) as redis_stream:
        receipt = redis_stream.send(batch)
    entries = streams.entries(stream, 3)
    assert [json.loads(e["event"]) for e in entries] == batch.events
    assert [e["event_id"] for e in entries] == [ev["event_id"] for ev in batch.events]
    assert {e["hook_id"] for e in entries} == {str(HOOK_ID)}
    assert {e["event_type"] for e in entries} == {"open"}
    assert set(entries[0]) == {"event", "event_id", "hook_id", "event_type"}
    assert [p["stream"] for p in receipt.payload] == [stream] * 3
    assert all("-" in p["id"] for p in receipt.payload)  # the server's entry ids


def test_the_stream_name_template_is_rendered_per_event(streams: Streams) -> None:
    # Given the default-shaped template and a batch of two event types
    prefix = streams.name("tpl")
    events = sample_events(3)
    events[1]["event_type"] = "click"
    with transport(stream=prefix + ".{{event_type}}") as redis_stream:
        redis_stream.send(Batch(HOOK_ID, "b", 1, events))
    opens, clicks = prefix + ".open", prefix + ".click"
    streams.names += [opens, clicks]
    assert [json.loads(e["event"])["event_id"] for e in streams.entries(opens, 2)] == [
        events[0]["event_id"], events[2]["event_id"]]
    assert [e["event_type"] for e in streams.entries(clicks, 1)] == ["click"]


def test_maxlen_trims_the_stream_approximately(streams: Streams) -> None:
    stream = streams.name("trim")
    with transport(stream=stream, maxlen=10) as redis_stream:
        for _ in range(5):
            redis_stream.send(sample_batch(200))
    length = streams.client.xlen(stream)
    assert 10 <= length < 1000  # "~": trimmed by whole nodes (100 entries each by default), never below 10


def test_a_key_that_is_not_a_stream_fails_only_its_events(streams: Streams) -> None:
    # Given two event types, one of whose stream names is taken by a plain string key
    prefix = streams.name("wrongtype")
    streams.client.set(prefix + ".click", "not a stream")
    streams.names += [prefix + ".open", prefix + ".click"]
    events = sample_events(3)
    events[1]["event_type"] = "click"
    with transport(stream=prefix + ".{{event_type}}") as redis_stream, pytest.raises(TargetRejected) as failed:
        redis_stream.send(Batch(HOOK_ID, "b", 1, events))
    # Then the others count as delivered, and the error names Redis's reason
    assert failed.value.delivered == frozenset({0, 2})
    assert failed.value.retryable
    assert "WRONGTYPE" in failed.value.message
    assert len(streams.entries(prefix + ".open", 2)) == 2


def test_a_template_rendering_an_empty_name_is_a_payload_error() -> None:
    with transport(stream="{{list_id}}") as redis_stream, pytest.raises(PayloadError):
        redis_stream.send(Batch(HOOK_ID, "b", 1, [{"event_id": "e", "event_type": "open"}]))


def connections_of(streams: Streams, transport_: RedisStreamTransport) -> list[dict[str, Any]]:
    return [c for c in streams.client.client_list() if c["name"] == transport_.client_name]


def test_one_connection_serves_many_sends_and_close_releases_it(streams: Streams) -> None:
    stream = streams.name("reuse")
    with transport(stream=stream) as redis_stream:
        for _ in range(3):
            redis_stream.send(sample_batch(2))
        assert len(connections_of(streams, redis_stream)) == 1
    wait_for(lambda: not connections_of(streams, redis_stream), "the connection to close")
    assert len(streams.entries(stream, 6)) == 6


def test_a_connection_the_server_killed_is_replaced_within_the_next_send(streams: Streams) -> None:
    stream = streams.name("killed")
    with transport(stream=stream) as redis_stream:
        redis_stream.send(sample_batch(1))
        [ours] = connections_of(streams, redis_stream)
        streams.client.client_kill_filter(_id=ours["id"])
        redis_stream.send(sample_batch(1))
        [new] = connections_of(streams, redis_stream)
        assert new["id"] != ours["id"]
    assert len(streams.entries(stream, 2)) == 2


def test_wrong_credentials_are_a_rejection() -> None:
    with transport(username="nobody-" + uuid.uuid4().hex[:6], password="wrong") as redis_stream, pytest.raises(
        TargetRejected
    ) as failed:
        redis_stream.send(sample_batch(1))
    assert "refused" in failed.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.7", "169.254.169.254"])
def test_a_non_public_host_is_refused_before_any_connect(host: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        url = f"redis://{host}:{listener.getsockname()[1]}/0"
        with transport(GUARDED, url=url) as redis_stream, pytest.raises(TargetForbidden) as refused:
            redis_stream.send(sample_batch(1))
        assert not refused.value.retryable
        assert "HOOK_ALLOW_PRIVATE_TARGETS" in refused.value.message
        assert not redis_stream.is_open
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_with_the_guard_on_an_unresolvable_host_is_unreachable_and_retryable() -> None:
    with transport(GUARDED, url="redis://no-such-redis.invalid:6379") as redis_stream, pytest.raises(
        TargetUnreachable
    ) as failed:
        redis_stream.send(sample_batch(1))
    assert failed.value.retryable
    assert "no-such-redis.invalid" in failed.value.message


def redis_server_command(port: int, workdir: Path) -> list[str]:
    # appendfsync always: an entry whose XADD was answered is on disk, so it survives the restart.
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(workdir)]


@pytest.mark.slow
def test_a_redis_restart_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    with private_server("redis-server", redis_server_command, tmp_path, "redis") as server:
        batches = [sample_batch(20) for _ in range(300)]
        red = transport(url=f"redis://127.0.0.1:{server.port}/0", stream="restart")
        with red, RetryingSender(red, batches) as sender:
            wait_for(lambda: sender.sent_batches >= 5, "the first batches")
            server.restart()
            sender.join()
        client = redis.Redis(port=server.port)
        stored = [fields[b"event_id"].decode() for _id, fields in client.xrange("restart")]
        client.close()
        assert set(stored) == {e["event_id"] for b in batches for e in b.events}
        assert sender.sent_batches == len(batches)
        assert sender.failures, "the restart was seen by the sender (it happened mid-delivery)"
        assert all(isinstance(f, TargetUnreachable) for f in sender.failures)


class TestRedisStreamConformance(TransportConformance):
    identity = "event_id"

    @pytest.fixture
    def target(self, streams: Streams) -> tuple[Streams, str]:
        return streams, streams.name("conformance")

    def make_transport(self, target: tuple[Streams, str]) -> Transport[Any]:
        return transport(stream=target[1])

    def make_unreachable_transport(self) -> Transport[Any]:
        return transport(url=f"redis://127.0.0.1:{closed_loopback_port()}/0")

    def arrived(self, target: tuple[Streams, str], count: int, timeout: float) -> list[Arrival]:
        streams, stream = target
        return [Arrival(json.loads(e["event"]), e["event_id"], e["hook_id"])
                for e in streams.entries(stream, count, timeout)]

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, RedisStreamTransport)
        streams = Streams()
        try:
            wait_for(lambda: not connections_of(streams, transport), "the connection to close")
        finally:
            streams.close()
        return not transport.is_open

    def payload_events(self, receipt: Receipt) -> list[dict[str, Any]]:
        return [p["fields"]["event"] for p in receipt.payload]
