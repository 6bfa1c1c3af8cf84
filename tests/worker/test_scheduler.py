"""The scheduler's clean-up: attempt pruning keeps exactly ATTEMPTS_KEEP_PER_HOOK per hook; quarantined events
are deleted after QUARANTINE_KEEP_HOURS."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.broker.celery_app import make_celery
from actionhooks.broker.triggers import Triggers
from actionhooks.settings import Settings
from actionhooks.storage import quarantine
from actionhooks.storage.tables import Attempt, Hook, QuarantinedEvent
from actionhooks.worker.scheduler import Scheduler


def test_pruning_keeps_exactly_the_newest_n_attempts_of_each_hook_when_hooks_interleave(
    sessions: sessionmaker[Session],
) -> None:
    settings = Settings(BROKER_URL="memory://", ATTEMPTS_KEEP_PER_HOOK=10)
    with sessions() as session:
        hooks = [Hook(account_id=1, name=f"h{i}", active=True, actions=["open"], filters={}, custom_data={},
                      delivery={"type": "http", "url": "http://example.org/"}) for i in range(3)]
        session.add_all(hooks)
        session.flush()
        busy, other, quiet = (h.id for h in hooks)
        # Given two hooks with 20 attempts each, interleaved (ids alternate), and one with 4
        for n in range(20):
            for hook_id in (busy, other) + ((quiet,) if n < 4 else ()):
                session.add(Attempt(hook_id=hook_id, delivery_id=f"d{hook_id}", attempt=n + 1,
                                    started_at=time.time(), n_events=1))
                session.flush()
        session.commit()
    # When the clean-up runs
    Scheduler(settings, sessions, Triggers(make_celery(settings))).cleanup(time.time())
    # Then each busy hook keeps exactly its 10 newest attempts and the quiet one all 4
    with sessions() as session:
        kept = {hook_id: sorted(session.scalars(select(Attempt.attempt).where(Attempt.hook_id == hook_id)))
                for hook_id in (busy, other, quiet)}
    assert kept == {busy: list(range(11, 21)), other: list(range(11, 21)), quiet: [1, 2, 3, 4]}


def test_quarantined_events_are_kept_for_their_hours_then_deleted_in_chunks_over_ticks(
    sessions: sessionmaker[Session],
) -> None:
    settings = Settings(BROKER_URL="memory://", QUARANTINE_KEEP_HOURS=1)
    now = time.time()
    with sessions() as session:
        # Given 2,500 events quarantined two hours ago (more than one clean-up chunk) and one a minute ago
        for n in range(2500):
            quarantine.quarantine(session, 1, {"event_id": f"old-{n}"}, now - 7300, "boom")
        session.execute(QuarantinedEvent.__table__.update().values(quarantined_at=now - 7200))
        quarantine.quarantine(session, 2, {"event_id": "recent"}, now - 60, "boom")
        session.commit()
    scheduler = Scheduler(settings, sessions, Triggers(make_celery(settings)))
    # When the clean-up runs: one chunk, and it asks to go on at the next tick rather than a period later
    scheduler.cleanup(now)
    with sessions() as session:
        assert session.query(QuarantinedEvent).count() == 2500 - quarantine.EXPIRE_CHUNK + 1
    assert scheduler._cleaned_at < now
    for _ in range(3):
        scheduler.cleanup(now)
    # Then only the recent one is left, to be replayed
    with sessions() as session:
        assert [e.event_id for e in session.query(QuarantinedEvent)] == ["recent"]
