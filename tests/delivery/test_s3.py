"""S3 archive transport against moto in server mode (a real HTTP server on loopback, started by the tests)."""

from __future__ import annotations

import gzip
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import S3Delivery
from actionhooks.delivery.s3 import S3Transport
from actionhooks.errors import TargetForbidden, TargetRejected
from actionhooks.settings import Settings
from tests.delivery.aws_fixtures import CREDENTIALS, REGION, aws, moto
from tests.delivery.brokers_fixtures import closed_loopback_port
from tests.delivery.conformance import HOOK_ID, Arrival, TransportConformance, sample_batch, sample_events
from tests.delivery.servers import wait_for

__all__ = ["moto"]  # the fixture, imported for pytest

SETTINGS = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=True)
GUARDED = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=False)


def transport(endpoint: str, bucket: str, settings: Settings = SETTINGS, **config: Any) -> S3Transport:
    cfg = S3Delivery(type="s3", bucket=bucket, region=REGION, endpoint_url=endpoint, **{**CREDENTIALS, **config})
    return S3Transport(cfg, settings)


class Buckets:
    """The test's S3 client: buckets with unique names, their objects decoded, emptied and deleted after."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.s3 = aws("s3", endpoint)
        self.names: list[str] = []

    def bucket(self) -> str:
        name = f"ah-test-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=name)
        self.names.append(name)
        return name

    def keys(self, bucket: str) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

    def read(self, bucket: str, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(the GetObject answer, the events of the object)."""
        answer = self.s3.get_object(Bucket=bucket, Key=key)
        lines = gzip.decompress(answer["Body"].read()).decode().splitlines()
        return answer, [json.loads(line) for line in lines]

    def close(self) -> None:
        for name in self.names:
            for key in self.keys(name):
                self.s3.delete_object(Bucket=name, Key=key)
            self.s3.delete_bucket(Bucket=name)


@pytest.fixture
def buckets(moto: str) -> Iterator[Buckets]:
    client = Buckets(moto)
    try:
        yield client
    finally:
        client.close()


def test_a_batch_is_one_gzip_json_lines_object_under_prefix_date_and_batch_id(buckets: Buckets) -> None:
    bucket = buckets.bucket()
    batch = sample_batch(3)  # event_date 2026-01-25
    with transport(buckets.endpoint, bucket, prefix="hooks/{{account_id}}") as s3:
        receipt = s3.send(batch)
    key = f"hooks/23/2026/01/25/{batch.batch_id}.jsonl.gz"
    assert buckets.keys(bucket) == [key]
    answer, events = buckets.read(bucket, key)
    assert events == batch.events
    assert answer["ContentType"] == "application/gzip"
    assert answer["Metadata"] == {"hook-id": str(HOOK_ID), "batch-id": batch.batch_id, "events": "3"}
    assert [p["key"] for p in receipt.payload] == [key]


def test_a_retry_rewrites_the_same_key_with_the_same_bytes(buckets: Buckets) -> None:
    bucket = buckets.bucket()
    batch = sample_batch(2)
    with transport(buckets.endpoint, bucket) as s3:
        first = s3.send(batch)
        second = s3.send(Batch(batch.hook_id, batch.batch_id, 2, batch.events))
    assert buckets.keys(bucket) == [f"actionhooks/2026/01/25/{batch.batch_id}.jsonl.gz"]
    assert first.payload[0]["etag"] == second.payload[0]["etag"]


def test_events_of_other_days_and_prefixes_become_one_object_each(buckets: Buckets) -> None:
    bucket = buckets.bucket()
    events = sample_events(4)
    events[1]["event_date"] = "2026-01-26T00:00:01+01:00"  # 2026-01-25 23:00:01 UTC: same day
    events[2]["event_date"] = "2026-02-01T10:00:00Z"
    events[3]["event_type"] = "click"
    with transport(buckets.endpoint, bucket, prefix="{{event_type}}") as s3:
        s3.send(Batch(HOOK_ID, "b1", 1, events))
    objects = {key: buckets.read(bucket, key)[1] for key in buckets.keys(bucket)}
    assert objects == {
        "open/2026/01/25/b1.jsonl.gz": [events[0], events[1]],
        "open/2026/02/01/b1.jsonl.gz": [events[2]],
        "click/2026/01/25/b1.jsonl.gz": [events[3]],
    }


def test_an_empty_prefix_writes_from_the_bucket_root(buckets: Buckets) -> None:
    bucket = buckets.bucket()
    with transport(buckets.endpoint, bucket, prefix="") as s3:
        s3.send(Batch(HOOK_ID, "b2", 1, sample_events(1)))
    assert buckets.keys(bucket) == ["2026/01/25/b2.jsonl.gz"]


def test_a_missing_bucket_is_a_retryable_rejection(buckets: Buckets) -> None:
    with transport(buckets.endpoint, f"ah-test-missing-{uuid.uuid4().hex[:8]}") as s3, pytest.raises(
        TargetRejected
    ) as failed:
        s3.send(sample_batch(1))
    assert failed.value.retryable
    assert "NoSuchBucket" in failed.value.message
    assert failed.value.status_code == 404


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.7", "169.254.169.254"])
def test_a_non_public_endpoint_is_refused_before_any_connect(host: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        endpoint = f"http://{host}:{listener.getsockname()[1]}"
        with transport(endpoint, "bucket", GUARDED) as s3, pytest.raises(TargetForbidden) as refused:
            s3.send(sample_batch(1))
        assert not refused.value.retryable
        assert "HOOK_ALLOW_PRIVATE_TARGETS" in refused.value.message
        with pytest.raises(BlockingIOError):
            listener.accept()


class TestS3Conformance(TransportConformance):
    """An object per batch, its key ending in the batch id: the identity is the batch id, as over HTTP.

    Two checks take S3's form: objects have no arrival order, and a retry overwrites its object.
    """

    identity = "batch_id"

    @pytest.fixture
    def target(self, buckets: Buckets) -> tuple[Buckets, str]:
        return buckets, buckets.bucket()

    def make_transport(self, target: tuple[Buckets, str]) -> Transport[Any]:
        return transport(target[0].endpoint, target[1])

    def make_unreachable_transport(self) -> Transport[Any]:
        return transport(f"http://127.0.0.1:{closed_loopback_port()}", "bucket")

    def arrived(self, target: tuple[Buckets, str], count: int, timeout: float) -> list[Arrival]:
        buckets, bucket = target
        arrivals: list[Arrival] = []

        def enough() -> bool:
            arrivals.clear()
            for key in buckets.keys(bucket):
                answer, events = buckets.read(bucket, key)
                batch_id = key.rsplit("/", 1)[1].removesuffix(".jsonl.gz")
                assert answer["Metadata"]["batch-id"] == batch_id
                arrivals.extend(Arrival(e, batch_id, answer["Metadata"]["hook-id"]) for e in events)
            return len(arrivals) >= count

        wait_for(enough, f"{count} events in {bucket}", timeout)
        return arrivals

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, S3Transport)
        return not transport.is_open

    def payload_events(self, receipt: Receipt) -> list[dict[str, Any]]:
        return [e for p in receipt.payload for e in p["events"]]

    def test_one_send_is_one_attempt_with_no_extra_copies(self, target: tuple[Buckets, str]) -> None:
        buckets, bucket = target
        first, second, sentinel = sample_batch(2), sample_batch(1), sample_batch(1)
        with self.make_transport(target) as s3:
            for batch in (first, second, sentinel):
                s3.send(batch)
        arrivals = self.arrived(target, 4, 10)
        by_batch = {b.batch_id: [e["event_id"] for e in b.events] for b in (first, second, sentinel)}
        assert len(buckets.keys(bucket)) == 3
        assert {a.identity: [] for a in arrivals}.keys() == by_batch.keys()
        for batch_id, ids in by_batch.items():
            assert [a.event["event_id"] for a in arrivals if a.identity == batch_id] == ids

    def test_a_retry_of_a_batch_carries_the_same_identity(self, target: tuple[Buckets, str]) -> None:
        buckets, bucket = target
        batch = sample_batch(1)
        retry = Batch(hook_id=batch.hook_id, batch_id=batch.batch_id, attempt=2, events=batch.events)
        with self.make_transport(target) as s3:
            first, second = s3.send(batch), s3.send(retry)
        assert first.payload[0]["key"] == second.payload[0]["key"]
        [arrival] = self.arrived(target, 1, 10)
        assert arrival.identity == batch.batch_id
        assert len(buckets.keys(bucket)) == 1
