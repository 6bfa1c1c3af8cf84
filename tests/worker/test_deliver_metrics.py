"""What a drain adds to the cluster's worker counters (storage/stats.py), on a real SQLite database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from actionhooks.broker.celery_app import make_celery
from actionhooks.delivery.stub import StubTransport
from actionhooks.errors import TargetUnreachable
from actionhooks.settings import Settings
from actionhooks.storage import stats
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tables import Delivery, Hook
from actionhooks.worker.batching import form_batches
from actionhooks.worker.deliver import claim_due, drain_hook
from actionhooks.worker.runtime import Runtime


@pytest.fixture
def stub() -> StubTransport:
    return StubTransport()


@pytest.fixture
def rt(tmp_path: Path, stub: StubTransport) -> Iterator[Runtime]:
    settings = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
                        HOOK_RETRY_TIMES=3, HOOK_RETRY_PERIOD_SEC=[60])
    runtime = Runtime(settings, make_celery(settings), transport_factory=lambda _config, _settings: stub)
    upgrade(runtime.engine)
    yield runtime
    runtime.close()


def _hook_with_batch(rt: Runtime, n_events: int, accepted_at: float) -> int:
    with rt.sessions() as session:
        row = Hook(account_id=1, name="h", active=True, actions=["open"], filters={}, custom_data={},
                   delivery={"type": "http", "url": "http://example.org/", "batch_timeout_sec": 0})
        session.add(row)
        session.commit()
        rt.hooks.refresh(force=True)
        hook = rt.hooks.get(row.id)
        assert hook is not None
        form_batches(session, hook, [{"n": i} for i in range(n_events)], accepted_at=accepted_at)
        session.commit()
        return row.id


def _totals(rt: Runtime) -> dict[tuple[str, str], float]:
    with rt.engine.connect() as connection:
        return dict(stats.totals(connection))


def test_a_drain_counts_its_attempts_by_outcome_its_events_and_the_latency_since_acceptance(
    rt: Runtime, stub: StubTransport
) -> None:
    accepted = time.time() - 40.0  # accepted 40 s ago (a long batch window, say)
    hook_id = _hook_with_batch(rt, 3, accepted)
    stub.fail_next(1, TargetUnreachable("connection refused"))
    drain_hook(rt, hook_id)  # the first attempt fails
    with rt.sessions() as session:
        session.execute(update(Delivery).values(next_attempt_at=0.0))
        session.commit()
    drain_hook(rt, hook_id)  # its retry succeeds
    got = _totals(rt)
    assert got[(stats.ATTEMPTS, "outcome=error,transport=http")] == 1
    assert got[(stats.ATTEMPTS, "outcome=ok,transport=http")] == 1
    assert got[(stats.DELIVERED_EVENTS, "transport=http")] == 3
    assert got[(stats.LATENCY, "le=60.0,transport=http")] == 1  # 40 s and a little: the (30, 60] bucket
    assert 40.0 <= got[(stats.LATENCY_SUM, "transport=http")] < 60.0


def test_an_attempt_cut_short_by_a_dead_worker_is_counted_as_lost_when_the_batch_is_claimed_again(
    rt: Runtime, stub: StubTransport
) -> None:
    hook_id = _hook_with_batch(rt, 1, 0.0)
    hook = rt.hooks.get(hook_id)
    assert hook is not None
    with rt.sessions() as session:  # a worker claims the batch and dies before recording anything
        assert len(claim_due(session, rt, hook, limit=1)) == 1
        session.execute(update(Delivery).values(lease_until=0.0))
        session.commit()
    drain_hook(rt, hook_id)
    got = _totals(rt)
    assert got[(stats.ATTEMPTS, "outcome=lost,transport=http")] == 1
    assert got[(stats.ATTEMPTS, "outcome=ok,transport=http")] == 1
