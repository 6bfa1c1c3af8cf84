"""SQS transport against moto in server mode (a real HTTP server on loopback, started by the tests)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.delivery.config import SqsDelivery
from actionhooks.delivery.sqs import SqsTransport
from actionhooks.errors import PayloadError, TargetForbidden, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings
from tests.delivery.aws_fixtures import CREDENTIALS, REGION, aws, moto
from tests.delivery.brokers_fixtures import closed_loopback_port
from tests.delivery.conformance import HOOK_ID, Arrival, TransportConformance, sample_batch, sample_events
from tests.delivery.servers import wait_for

__all__ = ["moto"]  # the fixture, imported for pytest

SETTINGS = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=True)
GUARDED = Settings(HOOK_HTTP_TIMEOUT_SEC=5, HOOK_ALLOW_PRIVATE_TARGETS=False)


def transport(endpoint: str, queue_url: str, settings: Settings = SETTINGS, **config: Any) -> SqsTransport:
    cfg = SqsDelivery(type="sqs", queue_url=queue_url, region=REGION, endpoint_url=endpoint,
                      **{**CREDENTIALS, **config})
    return SqsTransport(cfg, settings)


class Queues:
    """The test's SQS client: queues with unique names, received (and deleted) messages."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sqs = aws("sqs", endpoint)
        self.urls: list[str] = []

    def queue(self, fifo: bool = False, **attributes: str) -> str:
        name = f"ah-test-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
        if fifo:
            attributes["FifoQueue"] = "true"
        url: str = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.urls.append(url)
        return url

    def messages(self, url: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []

        def enough() -> bool:
            answer = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                              AttributeNames=["All"])
            for message in answer.get("Messages", []):
                got.append(message)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return len(got) >= count

        wait_for(enough, f"{count} messages in {url}", timeout)
        return got

    def close(self) -> None:
        for url in self.urls:
            self.sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def queues(moto: str) -> Iterator[Queues]:
    client = Queues(moto)
    try:
        yield client
    finally:
        client.close()


def attributes(message: dict[str, Any]) -> dict[str, str]:
    return {name: a["StringValue"] for name, a in message.get("MessageAttributes", {}).items()}


def test_each_event_is_one_message_with_identity_attributes_in_batches_of_ten(queues: Queues) -> None:
    url = queues.queue()
    batch = sample_batch(23)
    with transport(queues.endpoint, url) as sqs:
        receipt = sqs.send(batch)
    got = queues.messages(url, 23)
    assert [json.loads(m["Body"]) for m in got] == batch.events
    assert [attributes(m) for m in got] == [
        {"event_id": e["event_id"], "hook_id": str(HOOK_ID), "event_type": "open"} for e in batch.events]
    assert [p["message_id"] for p in receipt.payload] == [m["MessageId"] for m in got]


def test_a_fifo_queue_gets_the_event_id_as_dedup_id_and_the_rendered_group(queues: Queues) -> None:
    url = queues.queue(fifo=True)
    batch = sample_batch(3)
    with transport(queues.endpoint, url, message_group_id="list-{{list_id}}") as sqs:
        sqs.send(batch)
        sqs.send(Batch(batch.hook_id, batch.batch_id, 2, batch.events))  # a retry: SQS drops the copies
    got = queues.messages(url, 3)
    assert [m["Attributes"]["MessageDeduplicationId"] for m in got] == [e["event_id"] for e in batch.events]
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {"list-5"}
    with pytest.raises(AssertionError):
        queues.messages(url, 1, timeout=1)  # nothing more: the retry's copies were deduplicated


def test_a_group_id_sqs_would_refuse_is_replaced_by_its_hash(queues: Queues) -> None:
    url = queues.queue(fifo=True)
    events = sample_events(1)
    with transport(queues.endpoint, url, message_group_id="{{profile_id}} ✓ {{event_type}}") as sqs:
        receipt = sqs.send(Batch(HOOK_ID, "b", 1, events))
    group = receipt.payload[0]["MessageGroupId"]
    assert len(group) == 64
    assert queues.messages(url, 1)[0]["Attributes"]["MessageGroupId"] == group


def test_a_missing_queue_is_a_retryable_rejection(queues: Queues) -> None:
    url = f"{queues.endpoint}/123456789012/ah-test-missing-{uuid.uuid4().hex[:6]}"
    with transport(queues.endpoint, url) as sqs, pytest.raises(TargetRejected) as failed:
        sqs.send(sample_batch(2))
    assert failed.value.retryable
    assert "NonExistentQueue" in failed.value.message or "QueueDoesNotExist" in failed.value.message


def test_a_message_sqs_refuses_fails_alone(queues: Queues) -> None:
    # Given a queue whose maximum message size the middle event exceeds
    url = queues.queue(MaximumMessageSize="1024")
    events = sample_events(3)
    events[1]["custom_data"]["big"] = "x" * 2000
    with transport(queues.endpoint, url) as sqs:
        with pytest.raises(PayloadError) as failed:
            sqs.send(Batch(HOOK_ID, "b", 1, events))
        # Then the others are delivered, and the refused one fails for good (it can never be sent)
        assert failed.value.delivered == frozenset({0, 2})
        assert not failed.value.retryable
    got = queues.messages(url, 2)
    assert [json.loads(m["Body"])["event_id"] for m in got] == [events[0]["event_id"], events[2]["event_id"]]


class FakeSqs:
    """A loopback HTTP server speaking SQS's JSON protocol: the first SendMessageBatch fails the entries
    `fail_first` (a server-side error), later ones succeed, each answer `delay` s late; every request's
    entries are recorded."""

    def __init__(self, fail_first: frozenset[str] = frozenset(), delay: float = 0.0) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                entries = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["Entries"]
                owner.requests.append(entries)
                fail = fail_first if len(owner.requests) == 1 else frozenset()
                time.sleep(delay)  # a slow SQS
                body = json.dumps({
                    "Successful": [{"Id": e["Id"], "MessageId": uuid.uuid4().hex, "MD5OfMessageBody": "x"}
                                   for e in entries if e["Id"] not in fail],
                    "Failed": [{"Id": i, "SenderFault": False, "Code": "InternalError", "Message": "try again"}
                               for i in sorted(fail)],
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_entries_sqs_failed_are_not_delivered_and_the_retry_sends_only_them() -> None:
    fake = FakeSqs(fail_first=frozenset({"1"}))
    try:
        events = sample_events(3)
        with transport(fake.endpoint, f"{fake.endpoint}/123456789012/q") as sqs:
            with pytest.raises(TargetRejected) as failed:
                sqs.send(Batch(HOOK_ID, "b", 1, events))
            assert failed.value.delivered == frozenset({0, 2})
            assert failed.value.retryable
            assert "InternalError" in failed.value.message
            # The worker's retry carries the events not delivered
            rest = [e for i, e in enumerate(events) if i not in failed.value.delivered]
            sqs.send(Batch(HOOK_ID, "b", 2, rest))
        assert [json.loads(e["MessageBody"])["event_id"] for e in fake.requests[1]] == [events[1]["event_id"]]
    finally:
        fake.close()


def test_no_call_starts_after_the_attempts_time_ran_out() -> None:
    # Given an SQS answering each call in 0.3 s and an attempt of 1 s
    fake = FakeSqs(delay=0.3)
    try:
        events = sample_events(100)  # 10 calls: 3 s if nothing stopped them
        settings = Settings(HOOK_HTTP_TIMEOUT_SEC=1, HOOK_ALLOW_PRIVATE_TARGETS=True)
        with transport(fake.endpoint, f"{fake.endpoint}/123456789012/q", settings) as sqs, pytest.raises(
            TargetUnreachable
        ) as failed:
            sqs.send(Batch(HOOK_ID, "b", 1, events))
        # Then the calls made before the deadline count, and no other call was started
        assert 1 <= len(fake.requests) < 10
        assert failed.value.delivered == frozenset(range(10 * len(fake.requests)))
        assert failed.value.retryable
    finally:
        fake.close()


def test_the_engines_own_aws_credentials_are_never_used(queues: Queues, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the engine's environment holds other credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENGINE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "engine-secret")
    url = queues.queue()
    with transport(queues.endpoint, url) as sqs:
        sqs.send(sample_batch(1))
        assert sqs._client._request_signer._credentials.access_key == CREDENTIALS["access_key_id"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.7", "169.254.169.254"])
def test_a_non_public_endpoint_is_refused_before_any_connect(host: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        endpoint = f"http://{host}:{listener.getsockname()[1]}"
        with transport(endpoint, f"{endpoint}/1/q", GUARDED) as sqs, pytest.raises(TargetForbidden) as refused:
            sqs.send(sample_batch(1))
        assert not refused.value.retryable
        assert "HOOK_ALLOW_PRIVATE_TARGETS" in refused.value.message
        with pytest.raises(BlockingIOError):
            listener.accept()


class TestSqsConformance(TransportConformance):
    identity = "event_id"

    @pytest.fixture
    def target(self, queues: Queues) -> tuple[Queues, str]:
        return queues, queues.queue()

    def make_transport(self, target: tuple[Queues, str]) -> Transport[Any]:
        return transport(target[0].endpoint, target[1])

    def make_unreachable_transport(self) -> Transport[Any]:
        endpoint = f"http://127.0.0.1:{closed_loopback_port()}"
        return transport(endpoint, f"{endpoint}/123456789012/q")

    def arrived(self, target: tuple[Queues, str], count: int, timeout: float) -> list[Arrival]:
        queues, url = target
        return [Arrival(json.loads(m["Body"]), attributes(m)["event_id"], attributes(m)["hook_id"])
                for m in queues.messages(url, count, timeout)]

    def is_closed(self, transport: Transport[Any]) -> bool:
        assert isinstance(transport, SqsTransport)
        return not transport.is_open

    def payload_events(self, receipt: Receipt) -> list[dict[str, Any]]:
        return [p["body"] for p in receipt.payload]
