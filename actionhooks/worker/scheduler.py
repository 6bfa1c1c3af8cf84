"""The scheduler role: finds work that is due and nudges workers; runs the clean-ups.

Every tick it looks in the database for what no trigger is on its way for: intake a router never
took (lost trigger, crashed router), batch windows past due, retries whose time has come, batches
whose lease passed (worker killed); not a hook held back until later (worker/control.py: out of
rate budget, paused between probes, stopped as gone). Triggers are idempotent, so several schedulers or a trigger
sent twice only cost an idle task. Every CLEANUP_EVERY_SEC (main.json) it expires message content,
dedup ids, quarantined events past QUARANTINE_KEEP_HOURS and old attempt rows in bounded chunks,
and expires the event archive (storage/archive.py: whole day partitions on PostgreSQL). It also
resumes backfill jobs whose trigger or worker was lost and marks done those whose batches are all sent.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from actionhooks.broker.celery_app import close_celery, make_celery
from actionhooks.broker.triggers import Triggers
from actionhooks.settings import Settings
from actionhooks.storage import archive, backfills, content, deliveries, hook_state, intake, quarantine
from actionhooks.storage.db import engine_from_settings, session_factory
from actionhooks.storage.outbox import overdue_windows

log = logging.getLogger(__name__)

STALE_INTAKE_SEC = 2.0
BACKFILL_QUIET_SEC = 5.0
RETRIGGER_AFTER_SEC = 2.0


class Scheduler:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], triggers: Triggers) -> None:
        self.settings = settings
        self.sessions = sessions
        self.triggers = triggers
        self._sent: dict[tuple[str, int], float] = {}
        self._cleaned_at = 0.0

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.sessions() as session:
            accounts = intake.stale_work(session, now - STALE_INTAKE_SEC)
            windows = overdue_windows(session, now, grace=0.0)
            due = deliveries.due_hooks(session, now)
            due -= hook_state.held_hooks(session, now)  # rate-limited, paused or gone: woken when due
            backfills.settle(session, now)
            session.commit()
            stalled = backfills.stalled(session, now, quiet_sec=BACKFILL_QUIET_SEC)
        for account_id in accounts:
            self._once(("route", account_id), now, lambda a=account_id: self.triggers.route(a))
        for hook_id in set(windows) | due:
            self._once(("drain", hook_id), now, lambda h=hook_id: self.triggers.drain(h))
        for job_id in stalled:
            self._once(("backfill", job_id), now, lambda j=job_id: self.triggers.backfill(j))
        if now - self._cleaned_at >= self.settings.CLEANUP_EVERY_SEC:
            self._cleaned_at = now
            self.cleanup(now)

    def _once(self, key: tuple[str, int], now: float, send: object) -> None:
        """At most one trigger per target per RETRIGGER_AFTER_SEC, so a busy backlog is not flooded."""
        if now - self._sent.get(key, 0.0) >= RETRIGGER_AFTER_SEC:
            self._sent[key] = now
            send()  # type: ignore[operator]

    def cleanup(self, now: float) -> None:
        with self.sessions() as session:
            expired = content.expire(session, now, self.settings)
            history = archive.maintain(session, now, self.settings.EVENT_ARCHIVE_HOURS)
            intake.forget_seen(session, now - self.settings.EVENT_DEDUP_HOURS * 3600)
            session.commit()
            quarantined = quarantine.expire(session, now - self.settings.QUARANTINE_KEEP_HOURS * 3600)
            deliveries.prune_attempts(session, self.settings.ATTEMPTS_KEEP_PER_HOOK)
            session.commit()
        if expired.removed:
            log.info("expired %d stored message contents", expired.removed)
        if not (expired.finished and history.finished and quarantined):  # a backlog: on next tick, between triggers
            self._cleaned_at = now - self.settings.CLEANUP_EVERY_SEC
        self._sent = {k: t for k, t in self._sent.items() if now - t < 60}


def run_scheduler(settings: Settings, stop: threading.Event | None = None) -> None:
    """The `actionhooks scheduler` role: tick every SCHEDULER_TICK_SEC until SIGTERM/SIGINT."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    engine = engine_from_settings(settings)
    celery = make_celery(settings)
    scheduler = Scheduler(settings, session_factory(engine), Triggers(celery))
    log.info("scheduler running, tick %.2fs", settings.SCHEDULER_TICK_SEC)
    while not stop.is_set():
        try:
            scheduler.tick()
        except Exception:
            log.exception("scheduler tick failed; retrying next tick")
        stop.wait(settings.SCHEDULER_TICK_SEC)
    close_celery(celery)
    engine.dispose()
