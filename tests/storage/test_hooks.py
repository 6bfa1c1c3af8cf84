"""SqlHookRepository: tenancy, versions, the change log workers poll, and cascade of queued work."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.errors import HookValidationError, NotFound
from actionhooks.hooks.models import EXAMPLE_HOOK, HookSpec
from actionhooks.storage.hooks import SqlHookRepository
from actionhooks.storage.tables import Attempt, Delivery, HookChange, Outbox
from actionhooks.storage.tables import Hook as HookRow


def spec(**changes: object) -> HookSpec:
    return HookSpec.model_validate({**EXAMPLE_HOOK, **changes})


def changes(sessions: sessionmaker[Session]) -> list[tuple[int, int]]:
    with sessions() as session:
        return [(c.hook_id, c.account_id) for c in session.scalars(select(HookChange).order_by(HookChange.id))]


def test_an_added_hook_reads_back_with_its_secrets_version_one_and_utc_times(sessions: sessionmaker[Session]) -> None:
    repo = SqlHookRepository(sessions)
    added = repo.add(7, spec())
    read = repo.get(7, added.id)
    assert read.spec == added.spec
    assert read.spec.delivery.auth.token == "crm-api-token"  # type: ignore[union-attr]
    assert read.version == 1
    assert read.created_at.utcoffset() is not None
    assert read.created_at == added.created_at


def test_another_accounts_hook_does_not_exist_for_get_list_update_or_delete(sessions: sessionmaker[Session]) -> None:
    repo = SqlHookRepository(sessions)
    mine = repo.add(1, spec(name="mine"))
    repo.add(2, spec(name="theirs"))
    assert [h.spec.name for h in repo.list(1)] == ["mine"]
    with pytest.raises(NotFound):
        repo.get(2, mine.id)
    with pytest.raises(NotFound):
        repo.update(2, mine.id, lambda h: h.spec)
    with pytest.raises(NotFound):
        repo.delete(2, mine.id)
    assert repo.get(1, mine.id).version == 1


def test_every_write_bumps_the_version_and_appends_a_hook_change(sessions: sessionmaker[Session]) -> None:
    repo = SqlHookRepository(sessions)
    hook = repo.add(3, spec())
    updated = repo.update(3, hook.id, lambda h: h.spec.model_copy(update={"active": False}))
    assert updated.version == 2
    assert not updated.spec.active
    assert updated.updated_at >= hook.updated_at
    repo.delete(3, hook.id)
    assert changes(sessions) == [(hook.id, 3)] * 3


def test_a_change_that_raises_stores_nothing(sessions: sessionmaker[Session]) -> None:
    repo = SqlHookRepository(sessions)
    hook = repo.add(3, spec())

    def reject(_hook: object) -> HookSpec:
        raise HookValidationError([(("body", "name"), "no")])

    with pytest.raises(HookValidationError):
        repo.update(3, hook.id, reject)
    assert repo.get(3, hook.id).version == 1
    assert len(changes(sessions)) == 1


def test_deleting_a_hook_drops_its_outbox_deliveries_and_attempts(sessions: sessionmaker[Session]) -> None:
    repo = SqlHookRepository(sessions)
    doomed, kept = repo.add(5, spec()), repo.add(5, spec())
    now = time.time()
    with sessions.begin() as session:
        for hook_id in (doomed.id, kept.id):
            session.add(Outbox(hook_id=hook_id, events=b"[]", n_events=0, created_at=now, due_at=now))
            session.add(
                Delivery(
                    id=f"batch-{hook_id}", hook_id=hook_id, account_id=5, events=b"[]", n_events=0,
                    status="pending", attempts=0, next_attempt_at=now, lease_until=0.0, created_at=now,
                )
            )
            session.add(Attempt(hook_id=hook_id, delivery_id=f"batch-{hook_id}", attempt=1, started_at=now, n_events=0))
    repo.delete(5, doomed.id)
    with sessions() as session:
        for table in (Outbox, Delivery, Attempt):
            assert session.scalars(select(table.hook_id)).all() == [kept.id]
        assert session.scalar(select(func.count()).select_from(HookRow)) == 1
