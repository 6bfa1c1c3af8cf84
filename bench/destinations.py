"""The destinations of issue 21 for bench/brokers.py: for each, a fresh target, how many events
landed there, the hook's delivery config, and the raw client publishing the same messages.

Redis and NATS are the machine's (unique stream names, deleted after); Mosquitto is a private one
(a default-configured broker drops QoS 1 messages past 1,000 queued for a slow subscriber); SQS and
S3 are one moto server started for the run. Every process started here is stopped by its pid.
"""

from __future__ import annotations

import asyncio
import gzip
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import nats
import orjson
import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion

from tests.delivery.aws_fixtures import CREDENTIALS, REGION, moto_server
from tests.delivery.servers import PrivateServer, mosquitto_command

__all__ = ["DESTINATIONS", "Destination", "started"]


def _token() -> str:
    return uuid.uuid4().hex[:10]


class Destination:
    """One target of one run: `delivery` (the hook's config), `count()` events landed, `raw(events)` -> rate."""

    name: str
    raw_label: str
    # moto's SQS slows down as a queue grows (0.4 s per SendMessageBatch past ~1,000 messages here),
    # so an SQS run measures moto, not the engine: 100 events, and no engine run.
    max_events: int | None = None
    engine: bool = True

    def delivery(self) -> dict[str, Any]:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def raw(self, events: list[dict[str, Any]], clock: Any) -> float:
        """Events/s of the raw client sending `events` to this target (`clock(n, work)` times `work`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Delete what this target created."""


class RedisStream(Destination):
    name, raw_label = "Redis stream (XADD)", "redis-py pipelined XADD"

    def __init__(self, env: Env) -> None:
        self.client = redis.Redis()
        self.stream = f"ah-bench-{_token()}"

    def delivery(self) -> dict[str, Any]:
        return {"type": "redis_stream", "url": "redis://127.0.0.1:6379/0", "stream": self.stream}

    def count(self) -> int:
        return int(self.client.xlen(self.stream))

    def raw(self, events: list[dict[str, Any]], clock: Any) -> float:
        entries = [{"event": orjson.dumps(e), "event_id": e["event_id"], "hook_id": "1", "event_type": e["event_type"]}
                   for e in events]

        def work() -> None:
            for i in range(0, len(entries), 1000):
                pipe = self.client.pipeline(transaction=False)
                for fields in entries[i:i + 1000]:
                    pipe.xadd(self.stream, fields)
                pipe.execute()

        return float(clock(len(events), work))

    def close(self) -> None:
        self.client.delete(self.stream)
        self.client.close()


class NatsStream(Destination):
    name, raw_label = "NATS JetStream", "nats-py publish_async + acks"

    def __init__(self, env: Env) -> None:
        token = _token()
        self.stream, self.subject = f"AH_BENCH_{token}", f"ahbench.{token}"
        self._js(lambda js: js.add_stream(name=self.stream, subjects=[self.subject + ".>"]))

    @staticmethod
    def _js(work: Any) -> Any:
        async def main() -> Any:
            nc = await nats.connect("nats://127.0.0.1:4222")
            try:
                return await work(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(main())

    def delivery(self) -> dict[str, Any]:
        return {"type": "nats", "servers": ["nats://127.0.0.1:4222"], "subject": self.subject + ".{{event_type}}"}

    def count(self) -> int:
        async def messages(js: Any) -> int:
            return int((await js.stream_info(self.stream)).state.messages)

        return int(self._js(messages))

    def raw(self, events: list[dict[str, Any]], clock: Any) -> float:
        bodies = [(orjson.dumps(e), {"Nats-Msg-Id": f"raw-{e['event_id']}"}) for e in events]

        async def send(js: Any) -> None:
            for body, headers in bodies:
                await js.publish_async(self.subject + ".raw", body, headers=headers)
            await js.publish_async_completed()

        return float(clock(len(events), lambda: self._js(send)))

    def close(self) -> None:
        self._js(lambda js: js.delete_stream(self.stream))


class MqttTopic(Destination):
    name, raw_label = "MQTT QoS 1 (Mosquitto)", "paho-mqtt QoS 1, loop thread"

    def __init__(self, env: Env) -> None:
        self.port = env.mosquitto.port
        self.topic = f"ahbench/{_token()}"
        self.seen = 0
        self._lock = threading.Lock()
        self.sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.sub.on_subscribe = lambda *_a: subscribed.set()
        self.sub.on_message = self._on_message
        self.sub.connect("127.0.0.1", self.port)
        self.sub.subscribe(self.topic + "/#", qos=1)
        self.sub.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, *_args: Any) -> None:
        with self._lock:
            self.seen += 1

    def delivery(self) -> dict[str, Any]:
        return {"type": "mqtt", "host": "127.0.0.1", "port": self.port, "topic": self.topic + "/{{event_type}}"}

    def count(self) -> int:
        return self.seen

    def raw(self, events: list[dict[str, Any]], clock: Any) -> float:
        bodies = [orjson.dumps(e) for e in events]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            def work() -> None:
                infos = [client.publish(self.topic + "/raw", b, qos=1) for b in bodies]
                for info in infos:
                    info.wait_for_publish(60)

            return float(clock(len(events), work))
        finally:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        self.sub.disconnect()
        self.sub.loop_stop()


class _Aws:
    def __init__(self, env: Env, service: str) -> None:
        self.endpoint = env.moto
        self.client = boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                                   aws_access_key_id=CREDENTIALS["access_key_id"],
                                   aws_secret_access_key=CREDENTIALS["secret_access_key"])

    def aws_delivery(self) -> dict[str, Any]:
        return {"region": REGION, "endpoint_url": self.endpoint, **CREDENTIALS}


class SqsQueue(Destination, _Aws):
    name, raw_label = "SQS (moto server)", "boto3 send_message_batch of 10"
    max_events, engine = 100, False

    def __init__(self, env: Env) -> None:
        _Aws.__init__(self, env, "sqs")
        self.url = self.client.create_queue(QueueName=f"ah-bench-{_token()}")["QueueUrl"]

    def delivery(self) -> dict[str, Any]:
        return {"type": "sqs", "queue_url": self.url, **self.aws_delivery()}

    def count(self) -> int:
        attributes = self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def raw(self, events: list[dict[str, Any]], clock: Any) -> float:
        entries = [{"Id": str(i % 10), "MessageBody": orjson.dumps(e).decode()} for i, e in enumerate(events)]

        def work() -> None:
            for i in range(0, len(entries), 10):
                self.client.send_message_batch(QueueUrl=self.url, Entries=entries[i:i + 10])

        return float(clock(len(events), work))

    def close(self) -> None:
        self.client.delete_queue(QueueUrl=self.url)


class S3Bucket(Destination, _Aws):
    name, raw_label = "S3 archive (moto server)", "boto3 put_object, gzip JSON Lines of 1,000"

    def __init__(self, env: Env) -> None:
        _Aws.__init__(self, env, "s3")
        self.bucket = f"ah-bench-{_token()}"
        self.client.create_bucket(Bucket=self.bucket)

    def delivery(self) -> dict[str, Any]:
        return {"type": "s3", "bucket": self.bucket, **self.aws_delivery()}

    def _objects(self) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                yield item["Key"]

    def count(self) -> int:
        return sum(int(self.client.head_object(Bucket=self.bucket, Key=key)["Metadata"].get("events", 0))
                   for key in self._objects())

    def raw(self, events: list[dict[str, Any]], clock: Any) -> float:
        def work() -> None:
            for i in range(0, len(events), 1000):
                body = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events[i:i + 1000]), mtime=0)
                self.client.put_object(Bucket=self.bucket, Key=f"raw/{uuid.uuid4().hex}.jsonl.gz", Body=body)

        return float(clock(len(events), work))

    def close(self) -> None:
        for key in list(self._objects()):
            self.client.delete_object(Bucket=self.bucket, Key=key)
        self.client.delete_bucket(Bucket=self.bucket)


class Env:
    """The processes the destinations need: a private Mosquitto and a moto server."""

    def __init__(self, mosquitto: PrivateServer, moto: str) -> None:
        self.mosquitto = mosquitto
        self.moto = moto


@contextmanager
def started() -> Iterator[Env]:
    """A private Mosquitto and a moto server, stopped (by pid) on exit."""
    with tempfile.TemporaryDirectory(prefix="ah-bench-dest-") as tmp, moto_server() as moto:
        mosquitto = PrivateServer(mosquitto_command(), Path(tmp), "mosquitto")
        mosquitto.start()
        try:
            yield Env(mosquitto, moto)
        finally:
            mosquitto.stop()


DESTINATIONS: dict[str, type[Destination]] = {
    "redis_stream": RedisStream, "nats": NatsStream, "mqtt": MqttTopic, "sqs": SqsQueue, "s3": S3Bucket,
}
