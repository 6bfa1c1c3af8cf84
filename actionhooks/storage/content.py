"""Message content: stored per send, attached to later events of that send for include_content hooks
(the `content` table's one writer).

Stored at routing time (not in the API) so POST /events stays a single insert; the intake row is
durable until routed, so nothing is lost by waiting. Content older than HOOK_CONTENT_CLEANUP_HOURS
is never attached, even before the scheduler has deleted it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from actionhooks.settings import Settings
from actionhooks.storage.tables import Content
from actionhooks.storage.upsert import upsert

# Rows per INSERT and send ids per SELECT ... IN (...): a request of 10,000 sends would otherwise pass
# SQLite's usual limit of 32,766 bound parameters (4 per stored row).
STORE_CHUNK = 1000
LOAD_CHUNK = 1000
# Rows per cleanup transaction: short enough that a router waiting on the SQLite write lock barely notices.
EXPIRE_CHUNK = 1000
# Longest one cleanup run deletes before it lets the scheduler tick on (it resumes on the next tick).
EXPIRE_BUDGET_SEC = 1.0


def _send_id(event: dict[str, Any]) -> str | None:
    data = event.get("event_data")
    value = data.get("send_message_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def remember(session: Session, account_id: int, events: list[dict[str, Any]], now: float) -> dict[str, dict[str, Any]]:
    """Store the content carried by `events` under their send ids; returns it for this chunk's own use.

    A later event carrying content for the same send replaces it (and restarts its retention).
    """
    carried = {sid: e["content"] for e in events if isinstance(e.get("content"), dict) and (sid := _send_id(e))}
    rows = [
        {"account_id": account_id, "send_message_id": sid, "content": c, "stored_at": now} for sid, c in carried.items()
    ]
    for start in range(0, len(rows), STORE_CHUNK):
        upsert(session, Content, rows[start : start + STORE_CHUNK], keys=["account_id", "send_message_id"])
    return carried


class Attacher:
    """Adds `content` to events of include_content hooks.

    The stored content of every send id in `wanted` is read up front, LOAD_CHUNK ids per query, so a
    routed chunk of thousands of events costs a few queries rather than one per send.
    """

    def __init__(
        self,
        session: Session,
        account_id: int,
        fresh: dict[str, dict[str, Any]],
        settings: Settings,
        now: float,
        *,
        wanted: Iterable[dict[str, Any]],
    ) -> None:
        self.known: dict[str, dict[str, Any]] = dict(fresh)
        missing = sorted({sid for e in wanted if (sid := _send_id(e)) is not None and sid not in self.known})
        oldest = now - settings.HOOK_CONTENT_CLEANUP_HOURS * 3600
        for start in range(0, len(missing), LOAD_CHUNK):
            rows = session.execute(
                select(Content.send_message_id, Content.content).where(
                    Content.account_id == account_id,
                    Content.send_message_id.in_(missing[start : start + LOAD_CHUNK]),
                    Content.stored_at >= oldest,
                )
            )
            self.known.update((sid, content) for sid, content in rows)

    def __call__(self, delivered: dict[str, Any], carried: object = None) -> None:
        """Attach the send's content; an event without a send id gets only the content it `carried` itself."""
        sid = _send_id(delivered)
        content = self.known.get(sid) if sid is not None else carried
        if isinstance(content, dict):
            delivered["content"] = content


class Expired(NamedTuple):
    removed: int
    finished: bool  # False: expired content is left because the time budget ran out


def expire(
    session: Session, now: float, settings: Settings, chunk: int = EXPIRE_CHUNK, budget_sec: float = EXPIRE_BUDGET_SEC
) -> Expired:
    """Delete content past its retention, `chunk` rows per transaction so delivery never waits long.

    Stops after `budget_sec` (at least one chunk) so a large backlog does not hold up the scheduler's
    retries and batch windows; the caller continues on its next tick.
    """
    cutoff = now - settings.HOOK_CONTENT_CLEANUP_HOURS * 3600
    deadline = time.monotonic() + budget_sec
    removed = 0
    while True:
        keys = session.execute(
            select(Content.account_id, Content.send_message_id).where(Content.stored_at < cutoff).limit(chunk)
        ).all()
        if not keys:
            return Expired(removed, finished=True)
        # stored_at again: a send whose content was replaced since the select keeps it.
        session.execute(
            delete(Content).where(
                tuple_(Content.account_id, Content.send_message_id).in_(keys), Content.stored_at < cutoff
            )
        )
        session.commit()
        removed += len(keys)
        if time.monotonic() >= deadline:
            return Expired(removed, finished=len(keys) < chunk)
