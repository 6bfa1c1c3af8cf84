"""Backfill jobs on SQLite and PostgreSQL, driven in-process: the worker's task function, the drain and
the scheduler's settle/stalled on a real database, with the shipped StubTransport as receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select, update

from actionhooks.broker.celery_app import make_celery
from actionhooks.delivery.stub import StubTransport
from actionhooks.hooks.models import HookSpec
from actionhooks.settings import Settings
from actionhooks.storage import archive, backfills
from actionhooks.storage.hooks import SqlHookRepository
from actionhooks.storage.tables import ArchivedRequest, Backfill, Delivery
from actionhooks.worker import backfill as backfill_worker
from actionhooks.worker import scheduler as backfill_scheduler
from actionhooks.worker.backfill import run_backfill
from actionhooks.worker.deliver import drain_hook
from actionhooks.worker.runtime import Runtime
from actionhooks.worker.scheduler import Scheduler

BASE = time.time() - 3600  # an hour ago: inside the default archive


@pytest.fixture
def stub() -> StubTransport:
    return StubTransport()


@pytest.fixture
def rt(engine: Engine, tmp_path: Path, stub: StubTransport) -> Iterator[Runtime]:
    settings = Settings(DATA_DIR=str(tmp_path), BROKER_URL="memory://")
    runtime = Runtime(settings, make_celery(settings), engine=engine, transport_factory=lambda _c, _s: stub)
    yield runtime
    runtime.close()


def _event(n: int, campaign: int, event_type: str = "open", account_id: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"ev-{n}-{campaign}-{event_type}",
        "event_type": event_type,
        "event_date": "2026-01-25T15:04:05Z",
        "account_id": account_id,
        "list_id": 111,
        "profile_id": f"p{n}",
        "is_test": n % 2 == 0,
        "event_data": {"campaign_id": campaign, "message_id": 17},
    }


def _fill_archive(rt: Runtime, requests: int, per_request: int = 4, account_id: int = 1) -> None:
    """`requests` archived requests one second apart from BASE, each of campaigns 1, 2 (open) and a click."""
    with rt.sessions() as session:
        for n in range(requests):
            events = [_event(n, 1), _event(n, 2), _event(n, 1, "click")]
            events += [_event(1000 + n * 100 + k, 1) for k in range(per_request - 3)]
            archive.append(
                session, account_id, request_id=n + 1 + account_id * 10**6, blob=orjson.dumps(events),
                n_events=len(events), accepted_at=BASE + n,
            )
        session.commit()


def _hook(rt: Runtime, **changes: Any) -> int:
    spec = {
        "name": "crm", "actions": ["open"], "filters": {"campaigns": [1]},
        "custom_data": {"values": {"kind": "{{event_type}}-now"}},
        "delivery": {"type": "http", "url": "http://example.org/", "max_batch_size": 5, "batch_timeout_sec": 0},
        **changes,
    }
    return SqlHookRepository(rt.sessions).add(1, HookSpec.model_validate(spec)).id


def _change(rt: Runtime, hook_id: int, **changes: Any) -> None:
    SqlHookRepository(rt.sessions).update(
        1, hook_id, lambda h: HookSpec.model_validate({**h.spec.model_dump(), **changes})
    )


def _start(rt: Runtime, hook_id: int, start: float, end: float) -> int:
    with rt.sessions() as session:
        job_id = backfills.create(session, hook_id, 1, from_at=start, to_at=end, now=time.time())
        session.commit()
    return job_id


def _progress(rt: Runtime, job_id: int) -> backfills.Progress:
    with rt.sessions() as session:
        return backfills.progress(session, 1, job_id)


def _run_to_end(rt: Runtime, job_id: int, hook_id: int) -> backfills.Progress:
    """What the worker and scheduler do, in a loop: slices, drains, settle, until the job is finished."""
    for _ in range(500):
        run_backfill(rt, job_id)
        drain_hook(rt, hook_id)
        with rt.sessions() as session:
            backfills.settle(session, time.time())
            session.commit()
        progress = _progress(rt, job_id)
        if progress.phase == "finished":
            return progress
    raise AssertionError(f"backfill {job_id} did not finish: {progress}")


def _delivered(stub: StubTransport) -> list[dict[str, Any]]:
    return [event for batch in stub.batches for event in batch.events]


def test_a_backfill_delivers_the_intervals_events_the_current_filters_select_rendered_now_with_original_ids(
    rt: Runtime, stub: StubTransport
) -> None:
    _fill_archive(rt, 20)
    hook_id = _hook(rt)
    job_id = _start(rt, hook_id, BASE + 5, BASE + 15)

    progress = _run_to_end(rt, job_id, hook_id)

    got = _delivered(stub)
    # Then exactly the open events of campaign 1 accepted in [from, to) arrive, in batches of the
    # hook's size, with their original event_id and is_test, and custom_data rendered by the hook
    assert sorted(e["event_id"] for e in got) == sorted(
        event_id for n in range(5, 15) for event_id in (f"ev-{n}-1-open", f"ev-{1000 + n * 100}-1-open")
    )
    assert all(len(batch.events) <= 5 for batch in stub.batches)
    assert all(e["is_test"] == (int(e["event_id"].split("-")[1]) % 2 == 0) for e in got)
    assert all(e["custom_data"] == {"kind": "open-now"} for e in got)
    assert (progress.state, progress.scanned, progress.matched) == ("done", 40, 20)
    assert (progress.delivered, progress.failed, progress.pending) == (20, 0, 0)


def test_the_hooks_filters_at_backfill_time_decide_not_those_it_had_when_events_arrived(
    rt: Runtime, stub: StubTransport
) -> None:
    _fill_archive(rt, 6)
    hook_id = _hook(rt)
    _change(rt, hook_id, actions=["click", "open"], filters={"campaigns": [2]})
    job_id = _start(rt, hook_id, BASE, BASE + 6)
    _run_to_end(rt, job_id, hook_id)
    assert sorted(e["event_id"] for e in _delivered(stub)) == sorted(f"ev-{n}-2-open" for n in range(6))


def test_other_accounts_archives_are_never_read(rt: Runtime, stub: StubTransport) -> None:
    _fill_archive(rt, 3, account_id=2)  # same event types and campaigns, another account
    hook_id = _hook(rt)
    progress = _run_to_end(rt, _start(rt, hook_id, BASE, BASE + 10), hook_id)
    assert (progress.scanned, progress.delivered, stub.batches) == (0, 0, [])


def test_slices_are_bounded_and_the_job_resumes_from_its_cursor_after_a_worker_died(
    rt: Runtime, stub: StubTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backfill_worker, "SLICE_EVENTS", 8)
    monkeypatch.setattr(backfill_worker, "SLICE_BUDGET_SEC", 0.0)  # one slice per task run
    _fill_archive(rt, 10, per_request=4)
    hook_id = _hook(rt)
    job_id = _start(rt, hook_id, BASE, BASE + 10)

    assert run_backfill(rt, job_id) == 8  # two requests of four
    # When a worker dies holding the job (its lease taken, its slice never committed)
    with rt.sessions() as session:
        session.execute(update(Backfill).values(lease_until=time.time() + 60))
        session.commit()
        assert backfills.stalled(session, time.time(), quiet_sec=0) == []
    assert run_backfill(rt, job_id) == 0  # no other worker takes a leased job
    with rt.sessions() as session:
        session.execute(update(Backfill).values(lease_until=time.time() - 1, touched_at=time.time() - 10))
        session.commit()
        # Then once the lease passed the scheduler finds it, and it resumes from the committed cursor
        assert backfills.stalled(session, time.time(), quiet_sec=5) == [job_id]
    progress = _run_to_end(rt, job_id, hook_id)
    ids = [e["event_id"] for e in _delivered(stub)]
    assert progress.scanned == 40
    assert len(ids) == len(set(ids)) == 20  # nothing repeated, nothing lost


def test_a_cancelled_backfill_stops_and_withdraws_its_unsent_batches(
    rt: Runtime, stub: StubTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backfill_worker, "SLICE_EVENTS", 12)
    monkeypatch.setattr(backfill_worker, "SLICE_BUDGET_SEC", 0.0)
    _fill_archive(rt, 30)
    hook_id = _hook(rt)
    job_id = _start(rt, hook_id, BASE, BASE + 30)
    run_backfill(rt, job_id)
    assert _progress(rt, job_id).pending > 0

    with rt.sessions() as session:
        assert backfills.cancel(session, 1, job_id, time.time())
        session.commit()
    assert run_backfill(rt, job_id) == 0
    drain_hook(rt, hook_id)
    progress = _progress(rt, job_id)
    assert (progress.state, progress.pending, progress.delivered) == ("cancelled", 0, 0)
    assert stub.batches == []
    with rt.sessions() as session:
        assert session.scalars(select(Delivery.id)).all() == []
        assert backfills.cancel(session, 1, job_id, time.time())  # cancelling again is fine


def test_a_second_backfill_of_a_hook_waits_until_the_first_has_scanned(
    rt: Runtime, stub: StubTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backfill_worker, "SLICE_EVENTS", 3)
    monkeypatch.setattr(backfill_worker, "SLICE_BUDGET_SEC", 0.0)
    _fill_archive(rt, 4)
    hook_id = _hook(rt)
    first = _start(rt, hook_id, BASE, BASE + 4)
    second = _start(rt, hook_id, BASE, BASE + 2)
    assert run_backfill(rt, second) == 0  # queued behind the first
    assert _progress(rt, second).phase == "queued"
    with rt.sessions() as session:  # the scheduler polls the first only: it starts the second when done
        assert backfills.stalled(session, time.time() + 100, quiet_sec=0) == [first]
    _run_to_end(rt, first, hook_id)
    progress = _run_to_end(rt, second, hook_id)
    assert (progress.state, progress.delivered) == ("done", 4)
    assert len(_delivered(stub)) == 12  # the second interval delivered again: a backfill is a replay


def test_a_backfill_of_a_hook_stopped_meanwhile_fails_naming_why(rt: Runtime) -> None:
    _fill_archive(rt, 3)
    hook_id = _hook(rt)
    job_id = _start(rt, hook_id, BASE, BASE + 3)
    _change(rt, hook_id, active=False)
    run_backfill(rt, job_id)
    progress = _progress(rt, job_id)
    assert (progress.state, progress.error) == ("failed", "the hook was stopped")


def test_a_backfill_makes_no_more_batches_while_its_hook_has_enough_waiting(
    rt: Runtime, stub: StubTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backfill_worker, "MAX_OUTSTANDING_BATCHES", 2)
    monkeypatch.setattr(backfill_worker, "SLICE_EVENTS", 20)
    _fill_archive(rt, 40, per_request=10)  # 8 matching events per request, batches of 5
    hook_id = _hook(rt)
    job_id = _start(rt, hook_id, BASE, BASE + 40)
    run_backfill(rt, job_id)  # no receiver progress: the job must stop itself
    waiting = _progress(rt, job_id).pending
    assert 0 < waiting <= 2 * 5 + backfill_worker.SLICE_EVENTS
    assert _progress(rt, job_id).scanned < 400
    progress = _run_to_end(rt, job_id, hook_id)
    assert (progress.delivered, progress.matched) == (320, 320)


def test_events_whose_templates_fail_count_as_failed_and_sit_on_the_failed_list(
    rt: Runtime, stub: StubTransport
) -> None:
    _fill_archive(rt, 2)
    hook_id = _hook(rt, custom_data={"values": {"big": "{{ profile_id[99] }}"}})
    progress = _run_to_end(rt, _start(rt, hook_id, BASE, BASE + 4), hook_id)
    assert (progress.state, progress.failed, progress.delivered) == ("done", 4, 0)


class RecordingTriggers:
    """What the scheduler sends, recorded instead of sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def route(self, account_id: int) -> None:
        self.sent.append(("route", account_id))

    def drain(self, hook_id: int, countdown: float | None = None) -> None:
        self.sent.append(("drain", hook_id))

    def backfill(self, job_id: int, countdown: float | None = None) -> None:
        self.sent.append(("backfill", job_id))


def test_the_scheduler_resumes_a_lost_job_settles_a_delivered_one_and_expires_the_archive(
    rt: Runtime, stub: StubTransport
) -> None:
    _fill_archive(rt, 4)
    with rt.sessions() as session:  # and one request of three days ago, past a 2-hour retention
        archive.append(session, 1, request_id=1, blob=b"[]", n_events=0, accepted_at=time.time() - 3 * 86_400)
        session.commit()
    hook_id = _hook(rt)
    lost = _start(rt, hook_id, BASE, BASE + 2)
    triggers = RecordingTriggers()
    settings = rt.settings.model_copy(update={"EVENT_ARCHIVE_HOURS": 2})
    ticker = Scheduler(settings, rt.sessions, triggers)  # type: ignore[arg-type]

    ticker.tick(time.time() + backfill_scheduler.BACKFILL_QUIET_SEC + 1)
    assert ("backfill", lost) in triggers.sent
    with rt.sessions() as session:
        assert session.scalars(select(ArchivedRequest.id).where(ArchivedRequest.id == 1)).all() == []
        assert len(session.scalars(select(ArchivedRequest.id)).all()) == 4

    run_backfill(rt, lost)
    drain_hook(rt, hook_id)
    ticker.tick(time.time() + 60)
    assert _progress(rt, lost).state == "done"
