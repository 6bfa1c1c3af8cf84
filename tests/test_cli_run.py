"""`actionhooks run` on the embedded defaults: SQLite and the embedded broker, nothing else running."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

from tests.support.engine import Engine, event, free_port, http_hook
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow


def test_run_serves_the_api_and_delivers_on_embedded_defaults(tmp_path: Path) -> None:
    receiver = Receiver()
    engine = Engine(tmp_path)  # no BROKER_URL: the embedded broker
    try:
        engine.start("run")
        with engine.client() as api:
            api.post("/hooks", json=http_hook(receiver.url, batch_timeout_sec=0))
            assert api.post("/events", json=[event(1)]).status_code == 202
        got = receiver.wait_for(1, timeout=20)
        assert orjson.loads(got[0].body)[0]["profile_id"] == "profile-1"
        assert (tmp_path / "data" / "broker.sqlite").exists()
    finally:
        engine.stop()
        receiver.close()


def test_events_accepted_before_a_kill_9_of_the_whole_engine_are_delivered_after_restart(tmp_path: Path) -> None:
    # Given an engine whose receiver is down, so accepted events wait in the engine
    port = free_port()
    engine = Engine(tmp_path, HOOK_RETRY_TIMES=100)
    receiver = None
    try:
        engine.start("run")
        with engine.client() as api:
            api.post("/hooks", json=http_hook(f"http://127.0.0.1:{port}/hook", batch_timeout_sec=0))
            ids = api.post("/events", json=[event(i) for i in range(20)]).json()["ids"]
        # When the whole engine is killed at once (SIGKILL to its process group) and started again
        engine.kill("run", signal.SIGKILL)
        engine.start("run")
        receiver = Receiver(port=port)
        # Then every accepted event is delivered
        receiver.wait_until(
            lambda rs: {e["event_id"] for r in rs for e in orjson.loads(r.body)} >= set(ids), "all 20 events", 30
        )
    finally:
        engine.stop()
        if receiver is not None:
            receiver.close()
