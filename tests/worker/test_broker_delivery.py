"""Broker delivery end to end: real API, worker and scheduler processes on Redis, real RabbitMQ and Kafka.

One engine serves the module; each test works in an account of its own (so no other test's hook
matches its events) and, for RabbitMQ, in a vhost of its own (so queues named after event types and
the worker's connections are the test's alone).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pika.exceptions
import pytest

from tests.delivery.brokers_fixtures import Rabbit, closed_loopback_port, kafka_bootstrap, unique
from tests.delivery.test_kafka import consume, create_topic
from tests.support.engine import Engine, event, free_port, poll, redis_broker, running_engine
from tests.worker.conftest import rabbitmqctl

__all__ = ["kafka_bootstrap"]  # the fixture, imported for pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = ["click", "open", "deliv"]
_accounts = itertools.count(700)




@dataclass
class Tenant:
    """An account of the test's own: its API client and its events."""

    account_id: int
    api: httpx.Client

    def event(self, n: int, **fields: Any) -> dict[str, Any]:
        return event(n, account_id=self.account_id, event_id=f"a{self.account_id}-e{n}", **fields)

    def hook(self, delivery: dict[str, Any], **fields: Any) -> dict[str, Any]:
        response = self.api.post("/hooks", json={"name": delivery["type"], "actions": ACTIONS, "delivery": delivery,
                                                 **fields})
        assert response.status_code == 201, response.text
        hook: dict[str, Any] = response.json()
        return hook

    def send(self, *events: dict[str, Any]) -> None:
        response = self.api.post("/events", json=list(events))
        assert response.status_code == 202, response.text

    def failed(self, hook_id: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.api.get(f"/hooks/{hook_id}/failed").json()
        return rows

    def attempts(self, hook_id: int) -> list[dict[str, Any]]:
        """The hook's finished attempts, oldest first."""
        rows = self.api.get(f"/hooks/{hook_id}/attempts", params={"limit": 1000}).json()
        return [a for a in reversed(rows) if a["outcome"] != "started"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with running_engine(
        tmp_path_factory.mktemp("brokers"), "api", "worker", "scheduler", BROKER_URL=redis_broker(),
        HOOK_RETRY_TIMES=3, HOOK_RETRY_PERIOD_SEC=[1],
    ) as eng:
        yield eng


@pytest.fixture
def tenant(engine: Engine) -> Iterator[Tenant]:
    account_id = next(_accounts)
    with engine.client(account_id) as api:
        yield Tenant(account_id, api)


@pytest.fixture
def consumer(vhost: str) -> Iterator[Rabbit]:
    client = Rabbit(vhost)
    try:
        yield client
    finally:
        if client.connection.is_open:
            client.connection.close()


def amqp(kind: str, vhost: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "host": "127.0.0.1", "port": 5672, "vhost": vhost, **fields}


def kafka(bootstrap: str, topic: str, **fields: Any) -> dict[str, Any]:
    return {"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic, **fields}


def queue_appears(consumer: Rabbit, queue: str) -> None:
    """Wait until the engine declared `queue` (a passive declare of a missing queue closes the channel)."""

    def exists() -> bool:
        try:
            consumer.channel.queue_declare(queue, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:
            consumer.reopen()
            return False

    poll(exists, f"queue {queue!r} to be declared", timeout=15, every=0.1)


def bodies(messages: list[tuple[Any, Any, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(body) for _, _, body in messages]


# RabbitMQ queue ---------------------------------------------------------------------------------
def test_an_empty_queue_name_delivers_each_event_to_its_event_type_queue_as_captured_plus_custom_data(
    tenant: Tenant, vhost: str, consumer: Rabbit
) -> None:
    # Given a queue hook with no queue name and custom_data values
    values = {"kind": "{{event_type}}", "who": "{{profile_id}}"}
    hook = tenant.hook(amqp("rabbitmq_queue", vhost, queue=""), custom_data={"values": values})
    sent = [tenant.event(1), tenant.event(2, event_type="open"), tenant.event(3)]
    # When events of two types are captured
    tenant.send(*sent)
    # Then each lands in the durable queue named after its type, body = the event plus custom_data
    queue_appears(consumer, "click")
    queue_appears(consumer, "open")
    for queue in ("click", "open"):
        consumer.channel.queue_declare(queue, durable=True)  # a durable redeclaration of a transient one is a 406
    clicks, opens = consumer.messages("click", 2, timeout=15), consumer.messages("open", 1, timeout=15)
    expected = [{**e, "custom_data": {"kind": e["event_type"], "who": e["profile_id"]}} for e in sent]
    assert bodies(clicks) == [expected[0], expected[2]]
    assert bodies(opens) == [expected[1]]
    # And every message identifies itself and is persistent
    for (method, props, _), captured in zip([*clicks, *opens], [sent[0], sent[2], sent[1]], strict=True):
        assert (method.exchange, method.routing_key) == ("", captured["event_type"])
        assert props.content_type == "application/json"
        assert props.message_id == captured["event_id"]
        assert props.delivery_mode == 2
        assert props.headers == {"hook_id": hook["id"], "event_type": captured["event_type"]}


# RabbitMQ exchange ------------------------------------------------------------------------------
def test_an_exchange_hook_routes_by_list_id_and_event_type_so_a_topic_binding_selects_a_database(
    tenant: Tenant, vhost: str, consumer: Rabbit
) -> None:
    # Given a topic exchange with one queue bound to database 111 and one bound to everything
    exchange = "actions"
    consumer.channel.exchange_declare(exchange, "topic", durable=True)
    only_111, everything = consumer.queue("only-111"), consumer.queue("all")
    consumer.channel.queue_bind(only_111, exchange, "111.*")
    consumer.channel.queue_bind(everything, exchange, "#")
    hook = tenant.hook(amqp("rabbitmq_exchange", vhost, exchange=exchange, exchange_type="topic"))
    # When events of databases 111 and 222 are captured
    sent = [tenant.event(1), tenant.event(2, event_type="open"), tenant.event(3, list_id=222)]
    tenant.send(*sent)
    # Then the routing keys are <list_id>.<event_type> and the 111.* queue gets database 111's events only
    got_all = consumer.messages(everything, 3, timeout=15)
    assert [m.routing_key for m, _, _ in got_all] == ["111.click", "111.open", "222.click"]
    assert bodies(got_all) == sent
    assert bodies(consumer.messages(only_111, 2)) == sent[:2]
    assert consumer.depth(only_111) == 0
    props = got_all[2][1]
    assert (props.message_id, props.delivery_mode, props.content_type) == (sent[2]["event_id"], 2, "application/json")
    assert props.headers == {"hook_id": hook["id"], "event_type": "click"}


# Kafka ------------------------------------------------------------------------------------------
def test_kafka_messages_are_keyed_by_profile_so_each_profile_stays_on_one_partition_in_order(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    # Given a kafka hook on a topic with three partitions
    topic = create_topic(kafka_bootstrap, partitions=3)
    hook = tenant.hook(kafka(kafka_bootstrap, topic))
    # When six profiles' events are captured, three each, in two requests
    sent = [tenant.event(i, profile_id=f"profile-{i % 6}") for i in range(18)]
    tenant.send(*sent[:9])
    tenant.send(*sent[9:])
    # Then each message is the event, keyed by its profile, with identity headers
    messages = consume(kafka_bootstrap, topic, 18, timeout=30)
    by_id = {e["event_id"]: e for e in sent}
    partitions: dict[bytes, set[int]] = {}
    order: dict[bytes, list[str]] = {}
    for msg in messages:
        value = orjson.loads(msg.value())
        headers = {name: raw.decode() for name, raw in msg.headers()}
        assert value == by_id[value["event_id"]]
        assert msg.key() == value["profile_id"].encode()
        assert headers == {"event_id": value["event_id"], "hook_id": str(hook["id"]), "event_type": "click"}
        partitions.setdefault(msg.key(), set()).add(msg.partition())
        order.setdefault(msg.key(), []).append(value["event_id"])
    assert len(messages) == len(by_id)
    # And the same key always lands on the same partition, in capture order, over several partitions
    assert all(len(p) == 1 for p in partitions.values())
    assert len(set().union(*partitions.values())) > 1
    for key, ids in order.items():
        assert ids == [e["event_id"] for e in sent if e["profile_id"].encode() == key]


def test_a_kafka_key_template_that_does_not_compile_is_refused_at_save_naming_the_key(tenant: Tenant) -> None:
    for bad in ("{{ nope }}", "{{ profile_id", "{% for x in y %}"):
        response = tenant.api.post("/hooks", json={
            "name": "bad key", "actions": ACTIONS, "delivery": kafka("k:9092", "t", key=bad),
        })
        assert response.status_code == 422, response.text
        assert ["body", "delivery", "key"] in [e["loc"] for e in response.json()["detail"]]
    assert tenant.api.get("/hooks").json() == []


# Retries, the failed list and replay ------------------------------------------------------------
def test_an_unreachable_rabbitmq_is_retried_then_failed_and_a_replay_after_fixing_the_hook_delivers(
    tenant: Tenant, vhost: str, consumer: Rabbit
) -> None:
    # Given a queue hook pointing at a closed port (3 attempts, 1 s apart)
    queue = consumer.name("fixed")
    hook = tenant.hook(amqp("rabbitmq_queue", vhost, queue=queue, port=closed_loopback_port()))
    sent = [tenant.event(1), tenant.event(2)]
    tenant.send(*sent)
    # Then every attempt fails as unreachable and the batch ends in the failed list
    [failed] = poll(lambda: tenant.failed(hook["id"]), "the failed list", timeout=30)
    assert failed["attempts"] == 3
    assert failed["last_error"].startswith("TargetUnreachable: RabbitMQ 127.0.0.1:")
    assert failed["events"] == sent
    assert [a["outcome"] for a in tenant.attempts(hook["id"])] == ["error"] * 3
    # When the hook is pointed at the real broker and the failed batch replayed
    assert tenant.api.patch(f"/hooks/{hook['id']}", json={"delivery": {"port": 5672}}).status_code == 200
    assert tenant.api.post(f"/hooks/{hook['id']}/failed/replay", json={}).json() == {"replayed": 1}
    # Then the events arrive and the failed list empties
    queue_appears(consumer, queue)
    assert bodies(consumer.messages(queue, 2, timeout=15)) == sent
    poll(lambda: tenant.failed(hook["id"]) == [], "an empty failed list", timeout=10)


def test_a_kafka_broker_that_was_down_gets_the_failed_events_when_replayed_after_it_came_back(
    tenant: Tenant, tmp_path: Path
) -> None:
    # Given a kafka hook whose broker is down
    port = free_port()
    hook = tenant.hook(kafka(f"127.0.0.1:{port}", "comeback"))
    sent = [tenant.event(1), tenant.event(2)]
    tenant.send(*sent)
    [failed] = poll(lambda: tenant.failed(hook["id"]), "the failed list", timeout=30)
    assert failed["attempts"] == 3
    assert failed["last_error"].startswith("TargetUnreachable: Kafka 127.0.0.1:")
    # When the broker comes back on the same address and the batch is replayed
    pidfile = tmp_path / "kafka.pid"
    script = [sys.executable, str(ROOT / "scripts" / "kafka_broker.py")]
    subprocess.run([*script, "start", "--port", str(port), "--pidfile", str(pidfile)], check=True,
                   capture_output=True, timeout=60)
    try:
        bootstrap = f"127.0.0.1:{port}"
        create_topic(bootstrap, name="comeback")
        assert tenant.api.post(f"/hooks/{hook['id']}/failed/replay", json={}).json() == {"replayed": 1}
        # Then the events arrive and the failed list empties
        got = consume(bootstrap, "comeback", 2, timeout=30)
        assert [orjson.loads(m.value()) for m in got] == sent
        poll(lambda: tenant.failed(hook["id"]) == [], "an empty failed list", timeout=10)
    finally:
        subprocess.run([*script, "stop", "--pidfile", str(pidfile)], check=True, capture_output=True, timeout=60)


def test_when_a_queue_takes_only_part_of_a_batch_the_retries_send_only_the_rest(
    tenant: Tenant, vhost: str, consumer: Rabbit
) -> None:
    # Given a queue that holds three messages and nacks more (its consumer drains it as they come)
    queue = consumer.queue("small", **{"x-max-length": 3, "x-overflow": "reject-publish"})
    hook = tenant.hook(amqp("rabbitmq_queue", vhost, queue=queue))
    sent = [tenant.event(i) for i in range(5)]
    # When five events are captured
    tenant.send(*sent)
    # Then every event arrives exactly once, in order
    assert bodies(consumer.messages(queue, 5, timeout=40)) == sent
    # And the first attempt delivered three, the retry carried only the other two
    attempts = poll(lambda: (a := tenant.attempts(hook["id"])) and a[-1]["outcome"] == "ok" and a, "the last attempt")
    assert (attempts[0]["outcome"], attempts[0]["events"]) == ("error", 5)
    assert "TargetRejected: RabbitMQ nacked 2 of 5" in attempts[0]["error"]
    assert attempts[1]["events"] == 2
    time.sleep(1.5)  # another attempt would have come by now (1 s period); prove none does
    assert consumer.depth(queue) == 0
    assert tenant.attempts(hook["id"]) == attempts


# Test sending -----------------------------------------------------------------------------------
def test_test_sending_through_a_rabbitmq_queue_returns_exactly_the_message_published(
    tenant: Tenant, vhost: str, consumer: Rabbit
) -> None:
    queue = consumer.name("test-send")
    hook = tenant.hook(amqp("rabbitmq_queue", vhost, queue=queue))
    result = tenant.api.post(f"/hooks/{hook['id']}/test", json={}).json()
    assert result["ok"] is True, result
    [published] = result["payload"]
    [(_, props, body)] = consumer.messages(queue, 1)
    assert published == {
        "exchange": "", "routing_key": queue, "body": json.loads(body),
        "properties": {"content_type": props.content_type, "delivery_mode": 2, "message_id": props.message_id,
                       "headers": props.headers},
    }
    assert published["body"]["is_test"] is True
    assert props.headers == {"hook_id": hook["id"], "event_type": published["body"]["event_type"]}


def test_test_sending_through_a_rabbitmq_exchange_returns_exactly_the_message_published(
    tenant: Tenant, vhost: str, consumer: Rabbit
) -> None:
    consumer.channel.exchange_declare("tests", "topic", durable=True)
    queue = consumer.queue("bound")
    consumer.channel.queue_bind(queue, "tests", "#")
    hook = tenant.hook(amqp("rabbitmq_exchange", vhost, exchange="tests", exchange_type="topic"), database_id=111)
    given = {**tenant.event(1, event_type="open"), "is_test": True}
    result = tenant.api.post(f"/hooks/{hook['id']}/test", json={"event": given}).json()
    assert result["ok"] is True, result
    [published] = result["payload"]
    [(method, props, body)] = consumer.messages(queue, 1)
    assert (published["exchange"], published["routing_key"]) == ("tests", method.routing_key) == ("tests", "111.open")
    assert published["body"] == json.loads(body) == given
    assert published["properties"]["message_id"] == props.message_id == given["event_id"]


def test_test_sending_through_kafka_returns_exactly_the_message_published(
    tenant: Tenant, kafka_bootstrap: str
) -> None:
    topic = create_topic(kafka_bootstrap)
    hook = tenant.hook(kafka(kafka_bootstrap, topic))
    result = tenant.api.post(f"/hooks/{hook['id']}/test", json={}).json()
    assert result["ok"] is True, result
    [published] = result["payload"]
    [msg] = consume(kafka_bootstrap, topic, 1)
    assert published == {
        "topic": topic, "partition": msg.partition(), "offset": msg.offset(), "key": msg.key().decode(),
        "headers": {name: raw.decode() for name, raw in msg.headers()}, "value": orjson.loads(msg.value()),
    }
    assert published["key"] == "test-profile"
    assert published["headers"]["hook_id"] == str(hook["id"])


def test_test_sending_to_a_broker_that_is_down_reports_the_failure_and_what_would_have_been_sent(
    tenant: Tenant, vhost: str
) -> None:
    for delivery in (amqp("rabbitmq_queue", vhost, port=closed_loopback_port()),
                     kafka(f"127.0.0.1:{closed_loopback_port()}", "t")):
        hook = tenant.hook(delivery)
        result = tenant.api.post(f"/hooks/{hook['id']}/test", json={}).json()
        assert result["ok"] is False
        assert result["error"].startswith("TargetUnreachable")
        assert result["payload"][0]["is_test"] is True


# Connections ------------------------------------------------------------------------------------
def connections_in(vhost: str) -> list[tuple[str, str]]:
    """(broker-side pid, client connection name) of each connection open in `vhost`."""
    rows = rabbitmqctl("list_connections", "vhost", "pid", "client_properties", "-q", "--no-table-headers")
    found = []
    for row in rows.splitlines():
        name, pid, properties = row.split("\t", 2)
        if name == vhost:
            marker = '{"connection_name","'
            found.append((pid, properties.split(marker, 1)[1].split('"', 1)[0] if marker in properties else ""))
    return found


def test_a_worker_reuses_one_connection_per_hook_and_closes_it_when_the_hook_changes_or_is_deleted(
    engine: Engine, tenant: Tenant, vhost: str, consumer: Rabbit
) -> None:
    consumer.connection.close()  # only the engine's connections are left in the vhost
    first_queue, second_queue = unique("first"), unique("second")
    hook = tenant.hook(amqp("rabbitmq_queue", vhost, queue=first_queue))
    # Given two separate deliveries of one hook
    tenant.send(tenant.event(1))
    [connection] = poll(lambda: connections_in(vhost), "the worker's connection")
    assert f"pid {engine.procs['worker'].pid} " in connection[1]
    poll(lambda: [a for a in tenant.attempts(hook["id"]) if a["outcome"] == "ok"], "the first delivery")
    tenant.send(tenant.event(2))
    poll(lambda: len([a for a in tenant.attempts(hook["id"]) if a["outcome"] == "ok"]) == 2, "the second delivery")
    # Then they shared one connection
    assert connections_in(vhost) == [connection]
    # When the hook changes, Then its connection is closed and the next delivery opens another
    assert tenant.api.patch(f"/hooks/{hook['id']}", json={"delivery": {"queue": second_queue}}).status_code == 200
    tenant.send(tenant.event(3))
    [replacement] = poll(lambda: [c for c in connections_in(vhost) if c != connection] == connections_in(vhost)
                         and connections_in(vhost), "the old connection to close and a new one to open", timeout=15)
    assert replacement != connection
    # When the hook is deleted, Then its connection is closed within seconds, with no other traffic
    assert tenant.api.delete(f"/hooks/{hook['id']}").status_code == 204
    poll(lambda: connections_in(vhost) == [], "the deleted hook's connection to close", timeout=10, every=0.5)
    consumer.reopen()
    assert len(consumer.messages(first_queue, 2)) == 2
    assert len(consumer.messages(second_queue, 1)) == 1


# A RabbitMQ restart -----------------------------------------------------------------------------
def drain_ids(consumer: Rabbit, queue: str, expected: set[str], timeout: float) -> list[str]:
    """Event ids of every message taken from `queue` until all of `expected` came and the queue stays empty 1 s."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while not (expected <= set(got) and time.monotonic() - quiet_since > 1.0):
        assert time.monotonic() < deadline, f"{len(expected - set(got))} of {len(expected)} events never arrived"
        method, _, body = consumer.channel.basic_get(queue, auto_ack=True)
        if method is None:
            consumer.connection.sleep(0.05)
        else:
            got.append(json.loads(body)["event_id"])
            quiet_since = time.monotonic()
    return got


@pytest.mark.stops_shared_service
def test_every_event_arrives_when_rabbitmq_restarts_during_delivery(
    tmp_path: Path, vhost: str, consumer: Rabbit, record_property: Any
) -> None:
    # Given an engine with enough attempts to outlast a broker restart, and a stream of events
    queue = consumer.queue("restart")
    consumer.connection.close()
    with running_engine(
        tmp_path, "api", "worker", "scheduler", BROKER_URL=redis_broker(), HOOK_RETRY_TIMES=60,
        HOOK_RETRY_PERIOD_SEC=[0.5],
    ) as engine, engine.client(account_id := next(_accounts)) as api:
        tenant = Tenant(account_id, api)
        hook = tenant.hook(amqp("rabbitmq_queue", vhost, queue=queue))
        sent: list[dict[str, Any]] = []
        restarted = threading.Event()

        def stream() -> None:
            """The platform keeps sending, 10 events per request, until a second after the restart."""
            until = None
            while until is None or time.monotonic() < until:
                chunk = [tenant.event(len(sent) + i) for i in range(10)]
                tenant.send(*chunk)
                sent.extend(chunk)
                time.sleep(0.05)  # pacing the platform's requests, not synchronisation
                if until is None and restarted.is_set():
                    until = time.monotonic() + 1.0

        sender = threading.Thread(target=stream)
        sender.start()
        try:
            poll(lambda: [a for a in tenant.attempts(hook["id"]) if a["outcome"] == "ok"], "deliveries to begin")
            # When RabbitMQ's application stops and starts again meanwhile (always started again)
            try:
                rabbitmqctl("stop_app")
            finally:
                rabbitmqctl("start_app", timeout=120)
            rabbitmqctl("await_startup", timeout=120)
        finally:
            restarted.set()
            sender.join(60)
        assert not sender.is_alive()
        # Then every event arrives, and none ends in the failed list
        again = Rabbit(vhost)
        try:
            ids = drain_ids(again, queue, {e["event_id"] for e in sent}, timeout=60)
        finally:
            again.connection.close()
        assert tenant.failed(hook["id"]) == []
        outcomes = {a["outcome"] for a in tenant.attempts(hook["id"])}
        assert "error" in outcomes, "the restart did not interrupt any delivery; the test proved nothing"
    duplicates = len(ids) - len(set(ids))
    print(f"RabbitMQ restart: {len(set(ids))} events delivered, {duplicates} duplicate(s)")
    record_property("rabbitmq_restart_duplicates", duplicates)
    assert len(set(ids)) == len(sent)
