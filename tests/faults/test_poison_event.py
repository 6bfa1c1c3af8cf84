"""A poison event in a real engine (PostgreSQL, Redis, worker, scheduler, API processes).

The database itself refuses to store one event's content (a trigger, as a full column or a bad byte
would): the account's other events, before and after it, are delivered; the event is listed by
GET /quarantine for the account's admins only, counted in /metrics, and delivered by a replay once
the database accepts it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from tests.api.test_health import gauges
from tests.support.engine import event, http_hook, poll, postgres_database, redis_broker, running_engine
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

POISON_SEND = "poison-send"


def _delivered(receiver: Receiver) -> list[str]:
    return [e["event_id"] for r in receiver.requests for e in orjson.loads(r.body)]


def test_a_poison_event_is_quarantined_the_account_flows_on_and_an_admin_replays_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    with postgres_database("actionhooks_poison") as url, running_engine(
        tmp_path, "api", "worker", "scheduler", DATABASE_URL=url, BROKER_URL=redis_broker(),
    ) as engine, engine.client() as api, engine.client(24) as other, engine.client(scope="ingest") as ingest:
        dsn = url
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.send_message_id = '{POISON_SEND}' THEN "
                "RAISE EXCEPTION 'poison refused' USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$"
            )
            conn.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON contents FOR EACH ROW "
                         "EXECUTE FUNCTION refuse_poison()")
        api.post("/hooks", json=http_hook(receiver.url, max_batch_size=1000, batch_timeout_sec=0.2)).raise_for_status()
        batch = []
        for n in range(50):
            one = event(n, event_id=f"ev-{n}", content={"subject": f"s{n}"})
            if n == 20:
                one["event_data"]["send_message_id"] = POISON_SEND
            if n == 5:  # a field of a newer platform: delivered as sent
                one["field_added_by_a_newer_platform"] = {"v": [1, "two", None], "big": 2**64 - 1}
            batch.append(one)
        assert ingest.post("/events", json=batch).status_code == 202
        # Then every other event arrives, and so do those accepted after the poison
        poll(lambda: len(_delivered(receiver)) >= 49, "the 49 healthy events", timeout=60)
        assert ingest.post("/events", json=[event(99, event_id="ev-99")]).status_code == 202
        poll(lambda: "ev-99" in _delivered(receiver), "an event accepted after the poison", timeout=30)
        assert "ev-20" not in _delivered(receiver)
        [newer] = [e for r in receiver.requests for e in orjson.loads(r.body) if e["event_id"] == "ev-5"]
        assert newer["field_added_by_a_newer_platform"] == {"v": [1, "two", None], "big": 2**64 - 1}
        # The poison is visible: to the account's admin, in /metrics, not to others or to ingest tokens
        [held] = api.get("/quarantine").json()
        assert held["event_id"] == "ev-20"
        assert "poison refused" in held["error"]
        assert held["event"]["event_data"]["send_message_id"] == POISON_SEND
        assert other.get("/quarantine").json() == []
        assert ingest.get("/quarantine").status_code == 403
        page = gauges(httpx.get(f"{engine.base_url}/metrics").text)
        assert page["actionhooks_quarantined_events"] == 1
        assert poll(lambda: httpx.get(f"{engine.base_url}/healthz").json()["details"]["intake_events"] == 0,
                    "the intake to be empty")
        # When the cause is fixed and an admin replays it, it is delivered
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_poison ON contents")
        assert other.post("/quarantine/replay", json={"ids": [held["id"]]}).json() == {"replayed": 0}
        assert api.post("/quarantine/replay", json={}).json() == {"replayed": 1}
        poll(lambda: "ev-20" in _delivered(receiver), "the replayed event", timeout=30)
        assert api.get("/quarantine").json() == []
        assert sorted(_delivered(receiver)) == sorted([f"ev-{n}" for n in range(50)] + ["ev-99"])
