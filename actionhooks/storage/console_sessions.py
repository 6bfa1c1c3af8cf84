"""Console sessions: what the console's cookie carries instead of the admin token typed at sign-in.

A session is a 256-bit random secret (`ahs_` + 43 url-safe characters; like API tokens only its
SHA-256 is stored) bound to the admin token it was opened with and to an expiry. So:
- "Log out" deletes the row: a copy of the cookie taken before stops working at once, everywhere
  (no cache: console pages are few and a look-up is one indexed read);
- a stolen cookie is no API token: the REST API never accepts a session secret;
- revoking the admin token ends its sessions (the foreign key cascades).

Bounded: at most MAX_SESSIONS_PER_TOKEN live sessions per admin token (signing in again beyond it ends
the oldest), and expired rows are deleted whenever a session is opened.
"""

from __future__ import annotations

import secrets
import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage.tables import ApiToken, ConsoleSession
from actionhooks.storage.tokens import hash_token

__all__ = ["MAX_SESSIONS_PER_TOKEN", "PREFIX", "close_session", "open_session", "session_account"]

PREFIX = "ahs_"
MAX_SESSIONS_PER_TOKEN = 20


def open_session(sessions: sessionmaker[Session], admin_token: str, ttl_sec: float) -> tuple[str | None, str | None]:
    """(the token's scope, the new session's secret): (None, None) for an unknown token, ("ingest", None)
    for a token that may not sign in, ("admin", secret) for a session opened."""
    now = time.time()
    with sessions.begin() as session:
        found = select(ApiToken.id, ApiToken.account_id, ApiToken.scope)
        row = session.execute(found.where(ApiToken.token_hash == hash_token(admin_token))).first()
        if row is None or row.scope != "admin":
            return (None if row is None else str(row.scope)), None
        secret = PREFIX + secrets.token_urlsafe(32)
        session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
        keep = select(ConsoleSession.id).where(ConsoleSession.token_id == row.id).order_by(
            ConsoleSession.id.desc()).limit(MAX_SESSIONS_PER_TOKEN - 1)
        session.execute(delete(ConsoleSession).where(ConsoleSession.token_id == row.id, ConsoleSession.id.not_in(keep)))
        session.add(ConsoleSession(token_id=row.id, account_id=row.account_id, session_hash=hash_token(secret),
                                   created_at=now, expires_at=now + ttl_sec))
    return "admin", secret


def session_account(sessions: sessionmaker[Session], secret: str) -> int | None:
    """The account of a live session, else None (unknown, logged out, expired, or its token revoked)."""
    if not secret.startswith(PREFIX):
        return None
    with sessions() as session:
        return session.scalar(
            select(ConsoleSession.account_id).where(
                ConsoleSession.session_hash == hash_token(secret), ConsoleSession.expires_at > time.time()
            )
        )


def close_session(sessions: sessionmaker[Session], secret: str) -> None:
    """End a session (log out); nothing when it is already gone."""
    with sessions.begin() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.session_hash == hash_token(secret)))
