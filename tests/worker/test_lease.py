"""One deadline per attempt and a lease that outlasts it: a receiver that trickles its answer is cut
at the deadline, and its batch is never claimed (and sent) by a second worker meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tables import Attempt, Delivery
from actionhooks.worker.deliver import drain_hook, lease_seconds
from actionhooks.worker.runtime import Runtime
from tests.support.runtime import hook_with_batch
from tests.support.trickle import TrickleServer


@pytest.fixture
def server() -> Iterator[TrickleServer]:
    trickle = TrickleServer(mode="body", every=0.2)  # an answer would take 100,000 x 0.2 s
    yield trickle
    trickle.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    """Two workers on one database, with a 1 s attempt deadline and a retry a minute later."""
    settings = Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
        HOOK_HTTP_TIMEOUT_SEC=1, HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_RETRY_PERIOD_SEC=[60],
    )
    first, second = (Runtime(settings, make_celery(settings)) for _ in range(2))
    upgrade(first.engine)
    yield first, second
    first.close()
    second.close()


def race(first: Runtime, second: Runtime, hook_id: int) -> tuple[int, int, float]:
    """`first` drains the hook while `second` keeps trying to claim its work: (attempts of the first,
    attempts of the second while the first drained, seconds the first took)."""
    done = threading.Event()
    started = time.monotonic()
    drained: list[int] = []
    worker = threading.Thread(target=lambda: (drained.append(drain_hook(first, hook_id)), done.set()))
    worker.start()
    rival_attempts = 0
    while not done.wait(0.05):
        rival_attempts += drain_hook(second, hook_id)
    took = time.monotonic() - started
    worker.join(10)
    return drained[0], rival_attempts, took


def test_a_trickling_receiver_is_cut_at_the_deadline_and_never_sent_twice_through_lease_expiry(
    server: TrickleServer, workers: tuple[Runtime, Runtime]
) -> None:
    first, second = workers
    hook_id = hook_with_batch(first, {"type": "http", "url": server.url, "batch_timeout_sec": 0}, [{"n": 1}])
    hook = first.hooks.get(hook_id)
    assert hook is not None
    # When one worker drains while the other keeps trying to claim the same hook's work
    drained, rival_attempts, took = race(first, second, hook_id)
    rival_attempts += drain_hook(second, hook_id)
    # Then the attempt ended at its deadline, well within the lease, and only one request was made
    assert drained == 1
    assert rival_attempts == 0
    assert took < lease_seconds(first, hook), took
    assert server.requests == 1
    with first.sessions() as session:
        attempts = session.execute(select(Attempt.outcome, Attempt.error)).all()
        batch = session.scalars(select(Delivery)).one()
    assert len(attempts) == 1
    assert attempts[0][0] == "error"
    assert "no answer within 1s" in (attempts[0][1] or "")
    # And the batch waits for its retry, free of any lease
    assert batch.attempts == 1
    assert batch.lease_until == 0.0
    assert batch.next_attempt_at > time.time() + 50


def test_a_round_of_single_event_batches_is_claimed_whole_and_leased_for_every_send_of_a_thread(
    server: TrickleServer, workers: tuple[Runtime, Runtime]
) -> None:
    # Given 64 single-event batches (16 sending threads x 4 batches each: one claim round) for a receiver
    # whose every answer trickles past the 1 s deadline, so each thread's four sends take 4 s in a row
    first, second = workers
    delivery: dict[str, Any] = {"type": "http", "url": server.url, "batch_timeout_sec": 0, "max_batch_size": 1}
    hook_id = hook_with_batch(first, delivery, [{"n": n} for n in range(64)])
    hook = first.hooks.get(hook_id)
    assert hook is not None
    drained, rival_attempts, took = race(first, second, hook_id)
    # Then the first worker's one round took all 64, the rival none while their sends ran, and
    # every batch was sent once
    assert drained == 64
    assert rival_attempts == 0
    assert 4 <= took < lease_seconds(first, hook), took
    assert server.requests == 64
