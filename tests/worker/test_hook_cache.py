"""The hook cache under concurrency: the SQLite lock-order deadlock of issue 13 and out-of-order
changes caught by the periodic full reload (issue 14)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from actionhooks.broker.celery_app import make_celery
from actionhooks.errors import HookValidationError
from actionhooks.observability.cluster import ClusterMetrics
from actionhooks.settings import Settings
from actionhooks.storage.db import make_engine, reader_factory, session_factory
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.tables import Hook, HookChange
from actionhooks.worker.hook_cache import HookCache
from actionhooks.worker.runtime import Runtime
from tests.support.hammer import hammer


def _add_hook(session: Session, name: str, values: dict[str, str] | None = None) -> int:
    custom_data = {"profile_fields": [], "values": values} if values else {}
    row = Hook(account_id=1, name=name, active=True, actions=["open"], filters={}, custom_data=custom_data,
               delivery={"type": "http", "url": "http://example.org/"})
    session.add(row)
    session.flush()
    session.add(HookChange(hook_id=row.id, account_id=1))
    session.flush()
    return row.id


def test_a_router_holding_sqlite_write_lock_and_the_hook_watcher_do_not_deadlock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade(engine)
    cache = HookCache(Settings(), reader_factory(engine))
    cache.refresh(force=True)
    with session_factory(engine)() as session:
        new_hook = _add_hook(session, "changed meanwhile")
        session.commit()
    # The interleaving of the deadlock, forced: the watcher takes the cache's lock and reaches its
    # first database statement; only then does the router take SQLite's write lock (BEGIN IMMEDIATE)
    # and ask for a forced refresh, which needs the cache's lock; only then may the watcher go on.
    watcher_has_cache_lock = threading.Event()
    router_has_write_lock = threading.Event()
    watcher_thread: list[threading.Thread] = []

    def hold_the_watcher(_conn: Any) -> None:
        if threading.current_thread() in watcher_thread:
            watcher_has_cache_lock.set()
            router_has_write_lock.wait(30)

    event.listen(engine, "begin", hold_the_watcher, insert=True)  # before the engine's own BEGIN
    results: dict[str, object] = {}

    def watcher() -> None:
        try:
            cache.refresh(force=True)
            results["watcher"] = "done"
        except Exception as exc:
            results["watcher"] = exc

    def router() -> None:
        watcher_has_cache_lock.wait(30)
        try:
            with session_factory(engine)() as session:
                session.execute(text("DELETE FROM intake WHERE id < 0"))  # BEGIN IMMEDIATE: the write lock
                router_has_write_lock.set()
                cache.refresh(force=True)
                session.commit()
            results["router"] = "done"
        except Exception as exc:
            results["router"] = exc

    threads = [threading.Thread(target=watcher), threading.Thread(target=router)]
    watcher_thread.append(threads[0])
    for t in threads:
        t.start()
    # Then both finish, long before SQLite's 30 s busy timeout would have broken the old deadlock
    for t in threads:
        t.join(20)
    event.remove(engine, "begin", hold_the_watcher)
    assert not any(t.is_alive() for t in threads), "the router and the watcher block each other"
    assert results == {"watcher": "done", "router": "done"}
    assert cache.get(new_hook) is not None
    engine.dispose()


def test_a_change_committed_long_out_of_order_is_seen_by_the_full_reload(postgres_engine: Engine) -> None:
    sessions = session_factory(postgres_engine)
    cache = HookCache(Settings(), reader_factory(postgres_engine))
    cache.refresh(force=True)
    # Given a slow admin transaction that took change id n and has not committed
    slow = sessions()
    late_hook = _add_hook(slow, "committed late")
    # And a quicker one that took n+1 and committed
    with sessions() as quick:
        quick_hook = _add_hook(quick, "committed first")
        quick.commit()
    cache.refresh(force=True)
    assert cache.get(quick_hook) is not None
    # When the gap n is given up (its GAP_TTL_SEC passed) before the slow one commits
    cache.gap_ttl_sec = 0.0
    time.sleep(0.01)
    cache.refresh(force=True)
    slow.commit()
    slow.close()
    cache.refresh(force=True)
    assert cache.get(late_hook) is None  # the change log alone never shows it again
    # Then the periodic full reload finds it
    cache.full_reload_sec = 0.0
    cache.refresh(force=True)
    hook = cache.get(late_hook)
    assert hook is not None
    assert hook.name == "committed late"
    with sessions() as session:
        session.execute(text("DELETE FROM hooks"))
        session.commit()


def test_routers_matching_while_refreshes_swap_hooks_never_see_a_half_applied_change(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        ids = [_add_hook(session, f"h{i}") for i in range(40)]
        session.commit()
    cache = HookCache(Settings(), reader_factory(engine))
    cache.refresh(force=True)
    opened = {"event_type": "open", "account_id": 1, "list_id": 5, "event_data": {}}
    flips = itertools.cycle([False, True])

    def admin() -> None:  # stops or activates the even hooks: one committed change of 20 hooks, refreshed
        active = next(flips)
        with sessions() as session:
            for hook_id in ids[::2]:
                row = session.get(Hook, hook_id)
                assert row is not None
                row.active, row.version = active, row.version + 1
                session.add(HookChange(hook_id=hook_id, account_id=1))
            session.commit()
        cache.refresh(force=True)

    def route() -> str | None:
        found = [h.id for h in cache.capturing(opened, accepted_at=float("inf"))]
        if len(found) != len(set(found)) or len(found) not in (20, 40):
            return f"{len(found)} hooks matched ({len(set(found))} distinct)"
        return None

    problems = hammer(admin, route, writes=20)
    engine.dispose()
    assert problems == []


SMALL_TEMPLATES = Settings(TEMPLATE_MAX_OUTPUT_CHARS=20)  # a limit a hook stored under larger ones breaks


def test_a_stored_hook_that_no_longer_compiles_is_left_out_named_and_the_others_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade(engine)
    with session_factory(engine)() as session:
        good = _add_hook(session, "short values", {"id": "{{uuid}}"})
        old = _add_hook(session, "saved before the limit", {"long": "x" * 50})
        session.commit()
    found: list[tuple[int, int, HookValidationError]] = []
    cache = HookCache(SMALL_TEMPLATES, reader_factory(engine), on_broken=lambda *broken: found.append(broken))
    with caplog.at_level(logging.ERROR, logger="actionhooks.worker.hook_cache"):
        cache.refresh(force=True)
    # The cache runs the good hook and leaves the old one out of matching, saying which and why
    assert good in cache.index
    assert cache.get(good) is not None
    assert old not in cache.index
    assert cache.get(old) is None
    [(hook_id, version, error)] = found
    assert (hook_id, version) == (old, 1)
    assert error.errors == [(("custom_data", "values", "long"), "template longer than 20 characters")]
    assert f"hook {old} (version 1) cannot be compiled" in caplog.text
    assert "template longer than 20 characters" in caplog.text
    # A full reload does not report the same version again; once the hook is changed, it runs
    cache.full_reload_sec = 0
    cache.refresh(force=True)
    assert len(found) == 1
    with session_factory(engine)() as session:
        row = session.get(Hook, old)
        assert row is not None
        row.custom_data = {"profile_fields": [], "values": {"long": "x" * 10}}
        row.version += 1
        session.add(HookChange(hook_id=old, account_id=1))
        session.commit()
    cache.refresh(force=True)
    assert old in cache.index
    assert cache.get(old) is not None
    assert len(found) == 1


def test_a_hook_that_cannot_compile_is_counted_in_metrics_by_its_field(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade(engine)
    with session_factory(engine)() as session:
        _add_hook(session, "saved before the limit", {"long": "x" * 50})
        session.commit()
    runtime = Runtime(SMALL_TEMPLATES, make_celery(SMALL_TEMPLATES), engine=engine)
    try:
        runtime.start_watching(every=0.05)
        deadline = time.monotonic() + 30
        while (value := _not_compiled(engine)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runtime.close()
    assert value == {("custom_data",): 1.0}


def _not_compiled(engine: Engine) -> dict[tuple[str, ...], float] | None:
    families = {family.name: family for family in ClusterMetrics(engine, ttl=0).collect()}
    samples = families["actionhooks_hooks_not_compiled"].samples
    return {tuple(s.labels.values()): s.value for s in samples} or None
