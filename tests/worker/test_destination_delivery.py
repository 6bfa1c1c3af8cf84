"""Issue 21's destinations end to end: real API, worker and scheduler processes, events posted to the
API arriving in a Redis stream, a JetStream stream, at an MQTT subscriber, in an SQS queue and in S3."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.delivery.aws_fixtures import CREDENTIALS, REGION, moto
from tests.delivery.test_mqtt import Subscriber, props_of, unique_topic
from tests.delivery.test_nats import JetStream
from tests.delivery.test_redis_stream import Streams
from tests.delivery.test_s3 import Buckets
from tests.delivery.test_sqs import Queues, attributes
from tests.worker.test_broker_delivery import Tenant, engine, tenant

__all__ = ["engine", "moto", "tenant"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow

# kind -> (delivery config, read(count) -> [(event, identity)]) for a fresh target; cleanup registered
Target = tuple[dict[str, Any], Callable[[int], list[tuple[dict[str, Any], str]]]]


def redis_target(cleanup: list[Callable[[], None]], _moto: str) -> Target:
    streams = Streams()
    cleanup.append(streams.close)
    stream = streams.name("e2e")
    return ({"type": "redis_stream", "url": "redis://127.0.0.1:6379/0", "stream": stream},
            lambda n: [(json.loads(e["event"]), e["event_id"]) for e in streams.entries(stream, n, 30)])


def nats_target(cleanup: list[Callable[[], None]], _moto: str) -> Target:
    jetstream = JetStream()
    cleanup.append(jetstream.close)
    stream, prefix = jetstream.stream()
    return ({"type": "nats", "servers": ["nats://127.0.0.1:4222"], "subject": prefix + ".{{event_type}}"},
            lambda n: [(json.loads(m.data), m.headers["Nats-Msg-Id"]) for m in jetstream.messages(stream, n, 30)])


def mqtt_target(cleanup: list[Callable[[], None]], _moto: str) -> Target:
    topic = unique_topic()
    subscriber = Subscriber(topic + "/#")
    cleanup.append(subscriber.close)
    return ({"type": "mqtt", "host": "127.0.0.1", "port": 1883, "topic": topic + "/{{event_type}}"},
            lambda n: [(json.loads(m.payload), props_of(m)["event_id"]) for m in subscriber.received(n, 30)])


def sqs_target(cleanup: list[Callable[[], None]], endpoint: str) -> Target:
    queues = Queues(endpoint)
    cleanup.append(queues.close)
    url = queues.queue()
    return ({"type": "sqs", "queue_url": url, "region": REGION, "endpoint_url": endpoint, **CREDENTIALS},
            lambda n: [(json.loads(m["Body"]), attributes(m)["event_id"]) for m in queues.messages(url, n, 30)])


def s3_target(cleanup: list[Callable[[], None]], endpoint: str) -> Target:
    buckets = Buckets(endpoint)
    cleanup.append(buckets.close)
    bucket = buckets.bucket()

    def read(n: int) -> list[tuple[dict[str, Any], str]]:
        from tests.delivery.servers import wait_for

        wait_for(lambda: bool(buckets.keys(bucket)), "an object", 30)
        [key] = buckets.keys(bucket)
        body = buckets.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        events = [json.loads(line) for line in gzip.decompress(body).decode().splitlines()]
        return [(e, key) for e in events]

    # batch_timeout_sec 0: each routing round is written at once (the window has its own test)
    return ({"type": "s3", "bucket": bucket, "region": REGION, "endpoint_url": endpoint, "batch_timeout_sec": 0,
             **CREDENTIALS}, read)


TARGETS = {"redis_stream": redis_target, "nats": nats_target, "mqtt": mqtt_target, "sqs": sqs_target,
           "s3": s3_target}


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], None]]]:
    done: list[Callable[[], None]] = []
    yield done
    for close in reversed(done):
        close()


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_events_posted_to_the_api_arrive_at_the_destination_with_their_identity(
    tenant: Tenant, moto: str, cleanup: list[Callable[[], None]], kind: str
) -> None:
    delivery, read = TARGETS[kind](cleanup, moto)
    hook = tenant.hook(delivery)
    events = [tenant.event(n, event_type="click") for n in range(3)]
    tenant.send(*events)
    arrived = read(3)
    assert [e["event_id"] for e, _ in arrived] == [e["event_id"] for e in events]
    if kind == "s3":
        assert {identity.rsplit("/", 1)[1] for _, identity in arrived} == {
            a["batch_id"] + ".jsonl.gz" for a in tenant.attempts(hook["id"])}
    else:
        assert [identity for _, identity in arrived] == [e["event_id"] for e in events]
    assert [e["event_type"] for e, _ in arrived] == ["click"] * 3


def test_an_s3_hook_collects_events_of_several_requests_into_one_object_per_batch_window(
    tenant: Tenant, moto: str, cleanup: list[Callable[[], None]]
) -> None:
    delivery, read = s3_target(cleanup, moto)
    tenant.hook({**delivery, "batch_timeout_sec": 5})
    events = [tenant.event(n, event_type="click") for n in range(6)]
    for pair in (events[0:2], events[2:4], events[4:6]):
        tenant.send(*pair)  # three requests within the window
    assert [e["event_id"] for e, _ in read(6)] == [e["event_id"] for e in events]  # read() wants exactly one object


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_test_sending_delivers_one_event_and_returns_what_was_sent(
    tenant: Tenant, moto: str, cleanup: list[Callable[[], None]], kind: str
) -> None:
    delivery, read = TARGETS[kind](cleanup, moto)
    hook = tenant.hook(delivery)
    result = tenant.api.post(f"/hooks/{hook['id']}/test", json={}).json()
    assert result["ok"] is True, result
    [(event, _identity)] = read(1)
    assert event["is_test"] is True
    assert json.dumps(event, sort_keys=True) in json.dumps(result["payload"], sort_keys=True)
