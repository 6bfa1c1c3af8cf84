"""Message content: stored per send, attached to later events of that send for include_content hooks.

Stored at routing time (not in the API) so POST /events stays a single insert; the intake row is
durable until routed, so nothing is lost by waiting. Content older than HOOK_CONTENT_CLEANUP_HOURS
is never attached, even before the scheduler has deleted it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from actionhooks.settings import Settings
from actionhooks.storage.tables import Content


def _send_id(event: dict[str, Any]) -> str | None:
    data = event.get("event_data")
    value = data.get("send_message_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def remember(session: Session, account_id: int, events: list[dict[str, Any]], now: float) -> dict[str, dict[str, Any]]:
    """Store the content carried by `events` under their send ids; returns it for this chunk's own use."""
    carried = {sid: e["content"] for e in events if isinstance(e.get("content"), dict) and (sid := _send_id(e))}
    if carried:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(Content).values(
            [
                {"account_id": account_id, "send_message_id": sid, "content": c, "stored_at": now}
                for sid, c in carried.items()
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[Content.account_id, Content.send_message_id],
            set_={"content": stmt.excluded.content, "stored_at": stmt.excluded.stored_at},
        )
        session.execute(stmt)
    return carried


class Attacher:
    """Adds `content` to events of include_content hooks, reading stored content once per send id."""

    def __init__(
        self, session: Session, account_id: int, fresh: dict[str, dict[str, Any]], settings: Settings, now: float
    ) -> None:
        self.session = session
        self.account_id = account_id
        self.known: dict[str, dict[str, Any] | None] = dict(fresh)
        self.oldest = now - settings.HOOK_CONTENT_CLEANUP_HOURS * 3600

    def __call__(self, event: dict[str, Any]) -> None:
        sid = _send_id(event)
        if sid is None:
            return
        if sid not in self.known:
            self.known[sid] = self.session.scalar(
                select(Content.content).where(
                    Content.account_id == self.account_id,
                    Content.send_message_id == sid,
                    Content.stored_at >= self.oldest,
                )
            )
        content = self.known[sid]
        if content is not None:
            event["content"] = content


def expire(session: Session, now: float, settings: Settings, chunk: int = 5000) -> int:
    """Delete content past its retention, `chunk` rows per transaction so delivery never waits long."""
    cutoff = now - settings.HOOK_CONTENT_CLEANUP_HOURS * 3600
    removed = 0
    while True:
        keys = session.execute(
            select(Content.account_id, Content.send_message_id).where(Content.stored_at < cutoff).limit(chunk)
        ).all()
        if not keys:
            return removed
        session.execute(delete(Content).where(tuple_(Content.account_id, Content.send_message_id).in_(keys)))
        session.commit()
        removed += len(keys)
