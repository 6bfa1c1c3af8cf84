"""Broker and queue delivery (RabbitMQ, Kafka, Redis Streams, NATS JetStream, MQTT, SQS, S3), events/s
per worker process.

Three figures per destination, measured in the same run:
- engine: events posted to the API (requests of 100) and delivered by ONE worker process (prefork,
  concurrency 1; PostgreSQL, Redis broker), counted in the queue / topic;
- transport: the engine's transport alone (`Transport.send` of batches of 1,000, as the worker
  sends them), in this process;
- raw: the same messages published with pika (BlockingConnection, confirm each / no confirms),
  confluent-kafka (idempotent producer, produce + flush), or the client each newer destination's
  transport uses (bench/destinations.py), the client library's own limit.

Run: `.venv/bin/python bench/brokers.py` (RabbitMQ, NATS with JetStream, PostgreSQL and Redis on
127.0.0.1; the Kafka test broker, a private Mosquitto and a moto server for SQS and S3 are started
and stopped by the script). `--only redis_stream nats` runs only those destinations.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import common
import destinations
import e2e_http
import orjson
import pika
import pika.exceptions
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from actionhooks.delivery import Batch, make_transport
from actionhooks.delivery.config import DeliveryConfig
from actionhooks.settings import Settings
from tests.support.engine import Engine, event, poll, postgres_database

BATCH = 1000
RABBIT = {"host": "127.0.0.1", "port": 5672}


def messages(n: int) -> list[dict[str, Any]]:
    return [{**event(i), "event_id": str(uuid.uuid4())} for i in range(n)]


def rate(n: int, work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return n / (time.perf_counter() - started)


# RabbitMQ -------------------------------------------------------------------------------------
def rabbit_connection() -> pika.BlockingConnection:
    """A connection, retried for a while: other test suites on this machine restart RabbitMQ."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return pika.BlockingConnection(pika.ConnectionParameters(**RABBIT))
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def rabbit_queue() -> str:
    name = f"ah-bench-{uuid.uuid4().hex[:10]}"
    with rabbit_connection() as conn:
        conn.channel().queue_declare(name, durable=True)
    return name


def rabbit_depth(queue: str) -> int:
    with rabbit_connection() as conn:
        return int(conn.channel().queue_declare(queue, durable=True, passive=True).method.message_count)


def rabbit_drop(queue: str) -> None:
    with rabbit_connection() as conn:
        conn.channel().queue_delete(queue)


def raw_pika(events: list[dict[str, Any]], confirm: bool) -> float:
    queue = rabbit_queue()
    try:
        with rabbit_connection() as conn:
            channel = conn.channel()
            if confirm:
                channel.confirm_delivery()
            props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
            bodies = [orjson.dumps(e) for e in events]
            return rate(len(events), lambda: [channel.basic_publish("", queue, b, props) for b in bodies])
    finally:
        rabbit_drop(queue)


# Kafka ----------------------------------------------------------------------------------------
def load_kafka_broker_script() -> Any:
    spec = importlib.util.spec_from_file_location("kafka_broker", common.ROOT / "scripts" / "kafka_broker.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def kafka_broker() -> Iterator[str]:
    script = load_kafka_broker_script()
    pid, bootstrap = script.start_broker(None)
    try:
        yield bootstrap
    finally:
        script.stop_broker(pid)


def kafka_topic(bootstrap: str) -> str:
    name = f"ah-bench-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept referenced until the futures resolve
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(30)
    return name


class KafkaCounter:
    """Counts the messages of a topic by reading them (this broker's watermarks count record batches)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ah-bench-{uuid.uuid4().hex[:8]}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.seen = 0

    def __call__(self) -> int:
        while True:
            got = [m for m in self.consumer.consume(10_000, timeout=0.2) if m.error() is None]
            if not got:
                return self.seen
            self.seen += len(got)

    def close(self) -> None:
        self.consumer.close()


def raw_kafka(bootstrap: str, events: list[dict[str, Any]]) -> float:
    topic = kafka_topic(bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    values = [(e["profile_id"].encode(), orjson.dumps(e)) for e in events]
    producer.produce(topic, b"warm-up")  # connection and metadata before the clock starts
    producer.flush(30)

    def work() -> None:
        for key, value in values:
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(60)

    return rate(len(events), work)


# engine and transport -------------------------------------------------------------------------
def transport_rate(delivery: dict[str, Any], events: list[dict[str, Any]]) -> float:
    from pydantic import TypeAdapter

    config = TypeAdapter(DeliveryConfig).validate_python(delivery)
    transport = make_transport(config, Settings(HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_HTTP_TIMEOUT_SEC=30))
    try:
        transport.send(Batch(1, "warm", 1, events[:10]))
        batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
        return rate(len(events), lambda: [transport.send(Batch(1, uuid.uuid4().hex, 1, b)) for b in batches])
    finally:
        transport.close()


def engine_rate(folder: Path, delivery: dict[str, Any], count: Callable[[], int], events: int) -> float:
    """Events/s through the engine with ONE worker process, counted where they land."""
    with ExitStack() as stack:
        broker, _ = stack.enter_context(common.own_redis())
        engine = Engine(folder, DATABASE_URL=stack.enter_context(postgres_database("actionhooks_bench")),
                        BROKER_URL=broker, WORKER_POOL="prefork", WORKER_CONCURRENCY=1,
                        SCHEDULER_TICK_SEC=1.0, HOOK_HTTP_TIMEOUT_SEC=30)
        stack.callback(engine.stop)
        engine.start("api", "worker", "scheduler")
        with engine.client() as admin:
            admin.post("/hooks", json={"name": "bench", "actions": ["click"], "delivery": delivery}).raise_for_status()
        url = f"{engine.base_url}/api/v1/events"
        headers = {"Authorization": f"Bearer {engine.token(23, 'ingest')}"}
        e2e_http.post_all(url, e2e_http.bodies(10, 0), 0, headers)  # warm-up: connection, hook cache
        poll(lambda: count() >= 1000, "the warm-up events", timeout=60)
        payloads = e2e_http.bodies(events // e2e_http.BATCH, 10)
        started = time.time()
        e2e_http.post_all(url, payloads, 10, headers)
        poll(lambda: count() >= 1000 + events, f"{events} events in the broker", timeout=300, every=0.1)
        return events / (time.time() - started)


def rabbit_row(args: argparse.Namespace, events: list[dict[str, Any]], tmp: Path) -> list[object]:
    def engine_run() -> float:
        queue = rabbit_queue()
        try:
            folder = Path(tempfile.mkdtemp(dir=tmp))
            return engine_rate(folder, {"type": "rabbitmq_queue", "queue": queue, **RABBIT},
                               lambda: rabbit_depth(queue), args.events)
        finally:
            rabbit_drop(queue)

    def transport_run() -> float:
        queue = rabbit_queue()
        try:
            return transport_rate({"type": "rabbitmq_queue", "queue": queue, **RABBIT}, events)
        finally:
            rabbit_drop(queue)

    engine = median_of(args.runs, engine_run, "rabbitmq engine")
    transport = median_of(args.runs, transport_run, "rabbitmq transport")
    confirm_each = median_of(args.runs, lambda: raw_pika(events[: args.raw_confirm_events], True), "pika confirm each")
    no_confirms = median_of(args.runs, lambda: raw_pika(events, False), "pika no confirms")
    return ["RabbitMQ queue, confirms", engine, transport,
            f"pika confirm each {confirm_each:,.0f}; no confirms {no_confirms:,.0f}", f"{engine / no_confirms:.0%}",
            ">= 5,000"]


def kafka_row(args: argparse.Namespace, events: list[dict[str, Any]], tmp: Path) -> list[object]:
    with kafka_broker() as bootstrap:
        def engine_run() -> float:
            topic = kafka_topic(bootstrap)
            counter = KafkaCounter(bootstrap, topic)
            try:
                return engine_rate(Path(tempfile.mkdtemp(dir=tmp)),
                                   {"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic},
                                   counter, args.events)
            finally:
                counter.close()

        def transport_run() -> float:
            return transport_rate({"type": "kafka", "bootstrap_servers": bootstrap, "topic": kafka_topic(bootstrap)},
                                  events)

        engine = median_of(args.runs, engine_run, "kafka engine")
        transport = median_of(args.runs, transport_run, "kafka transport")
        raw = median_of(args.runs, lambda: raw_kafka(bootstrap, events), "confluent-kafka raw")
    return ["Kafka (Tansu), idempotent", engine, transport, f"confluent-kafka {raw:,.0f}", f"{engine / raw:.0%}",
            ">= 50,000"]


def destination_row(args: argparse.Namespace, kind: str, env: destinations.Env, tmp: Path) -> list[object]:
    """Engine, transport alone and raw client for one of issue 21's destinations, each on a fresh target."""
    cls = destinations.DESTINATIONS[kind]
    count = min(args.dest_events, cls.max_events or args.dest_events)
    events = messages(count)

    def on_fresh(measure: Callable[[destinations.Destination], float]) -> float:
        target = cls(env)
        try:
            return measure(target)
        finally:
            target.close()

    transport = median_of(args.runs, lambda: on_fresh(lambda t: transport_rate(t.delivery(), events)),
                          f"{kind} transport")
    raw = median_of(args.runs, lambda: on_fresh(lambda t: t.raw(events, rate)), f"{kind} raw")
    label = f"{cls.name}, {count:,} events"
    if not cls.engine:
        return [label, "not measured (the server's limit)", transport, f"{cls.raw_label} {raw:,.0f}", "", ""]
    engine = median_of(args.runs, lambda: on_fresh(lambda t: engine_rate(
        Path(tempfile.mkdtemp(dir=tmp)), t.delivery(), t.count, count)), f"{kind} engine")
    return [label, engine, transport, f"{cls.raw_label} {raw:,.0f}", f"{engine / raw:.0%}", ""]


def median_of(runs: int, measure: Callable[[], float], label: str) -> float:
    values = []
    for _ in range(runs):
        values.append(measure())
        print(f"  {label}: {values[-1]:,.0f}/s", file=sys.stderr, flush=True)
    return common.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=50_000, help="messages per run")
    parser.add_argument("--raw-confirm-events", type=int, default=2_000,
                        help="messages per run of pika confirming each one (slow)")
    parser.add_argument("--dest-events", type=int, default=20_000,
                        help="messages per run for Redis, NATS, MQTT, SQS and S3")
    parser.add_argument("--only", nargs="+", choices=["rabbitmq", "kafka", *destinations.DESTINATIONS],
                        help="run these destinations only")
    args = parser.parse_args()
    print(common.machine(), file=sys.stderr)
    events = messages(args.events)
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="ah-bench-") as tmp:
        if not args.only or "rabbitmq" in args.only:
            rows.append(rabbit_row(args, events, Path(tmp)))
        if not args.only or "kafka" in args.only:
            rows.append(kafka_row(args, events, Path(tmp)))
        kinds = [k for k in destinations.DESTINATIONS if not args.only or k in args.only]
        if kinds:
            with destinations.started() as env:
                rows.extend(destination_row(args, kind, env, Path(tmp)) for kind in kinds)
    title = (f"Broker delivery, events/s per worker process ({args.events:,} events for RabbitMQ and Kafka, "
             f"{args.dest_events:,} for the others, median of {args.runs})")
    print(common.table(title,
                       ["target", "engine, 1 worker process", "transport alone", "raw client (reference)",
                        "engine of raw", "target"], rows))


if __name__ == "__main__":
    main()
