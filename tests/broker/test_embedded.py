"""The embedded broker (broker/embedded.py): a trigger sent is received once, in order, woken by
another process's commit, deleted when taken, and given back when its consumer closes unacked."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings

TRANSPORT = "actionhooks.broker.embedded:Transport"


def connect(path: Path) -> Connection:
    return Connection(f"sqlite:///{path}", transport=TRANSPORT)


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute("SELECT count(*) FROM actionhooks_triggers").fetchone()[0]
    return count


def test_triggers_arrive_once_in_order_and_leave_no_row(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite"
    with connect(path) as sender, connect(path) as first, connect(path) as second:
        out = sender.SimpleQueue("q")
        for n in range(10):
            out.put({"n": n})
        got = []
        for conn in (first, second) * 5:  # two consumers take turns: each trigger goes to one of them
            message = conn.SimpleQueue("q").get(timeout=5)
            got.append(message.payload["n"])
            message.ack()
        assert got == list(range(10))
        assert rows(path) == 0
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_consumer_that_found_the_queue_empty_sees_another_process_commit(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite"
    with connect(path) as consumer:
        queue = consumer.SimpleQueue("q")
        assert queue.qsize() == 0
        with pytest.raises(queue.Empty):  # found empty: polls now only read data_version until someone commits
            queue.get(timeout=0.2)
        send = f"Connection('sqlite:///{path}', transport='{TRANSPORT}').SimpleQueue('q').put({{'n': 1}})"
        subprocess.run([sys.executable, "-c", f"from kombu import Connection; {send}"], check=True, timeout=60)
        message = queue.get(timeout=10)
        assert message.payload == {"n": 1}
        message.ack()


def test_its_own_send_is_seen_by_the_same_connection(tmp_path: Path) -> None:
    """SQLite's data_version does not move for a connection's own commits: a send clears what it knew."""
    with connect(tmp_path / "broker.sqlite") as conn:
        queue = conn.SimpleQueue("q")
        with contextlib.suppress(queue.Empty):
            queue.get(timeout=0.1)
        queue.put({"n": 2})
        message = queue.get(timeout=5)
        assert message.payload == {"n": 2}
        message.ack()


def test_an_unacked_trigger_is_given_back_when_its_consumer_closes(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite"
    with connect(path) as conn:
        conn.SimpleQueue("q").put({"n": 3})
    with connect(path) as conn:
        taken = conn.SimpleQueue("q").get(timeout=5)  # never acked: a worker stopping mid-task
        assert taken.payload == {"n": 3}
        assert rows(path) == 0
    assert rows(path) == 1  # restored at close (kombu's virtual QoS), for the next worker
    with connect(path) as conn:
        message = conn.SimpleQueue("q").get(timeout=5)
        assert message.payload == {"n": 3}
        message.ack()


def test_queues_are_apart_and_purge_empties_one(tmp_path: Path) -> None:
    with connect(tmp_path / "broker.sqlite") as conn:
        a, b = conn.SimpleQueue("tenant-a"), conn.SimpleQueue("tenant-b")
        a.put({"q": "a"})
        b.put({"q": "b"})
        assert (a.qsize(), b.qsize()) == (1, 1)
        assert a.clear() == 1
        assert (a.qsize(), b.qsize()) == (0, 1)
        assert b.get(timeout=5).payload == {"q": "b"}


def test_the_engine_sends_triggers_through_it(tmp_path: Path) -> None:
    """The Celery app of the embedded defaults writes its task messages into the broker file."""
    settings = Settings(DATA_DIR=str(tmp_path), BROKER_QUEUE="engine-q")
    app = make_celery(settings)
    try:
        app.send_task("actionhooks.route", args=[23])
    finally:
        app.close()
    assert rows(tmp_path / "broker.sqlite") == 1
    with connect(tmp_path / "broker.sqlite") as conn:
        message = conn.SimpleQueue("engine-q").get(timeout=5)
        assert message.headers["task"] == "actionhooks.route"
        assert message.headers["argsrepr"] == "[23]"
