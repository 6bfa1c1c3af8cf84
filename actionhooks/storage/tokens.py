"""API tokens: 256-bit random secrets shown once; only their SHA-256 is stored.

A token is `ah_` + 43 url-safe characters. Because the secret is uniformly random and long, a plain
SHA-256 is as strong as a slow KDF would be (there is no dictionary to guess from), and it lets the
API find a token with one indexed lookup on the hash.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage.tables import ApiToken

Scope = Literal["admin", "ingest"]
SCOPES: tuple[Scope, ...] = ("admin", "ingest")
PREFIX = "ah_"


def hash_token(token: str) -> str:
    """The hex SHA-256 stored in api_tokens.token_hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(sessions: sessionmaker[Session], account_id: int, scope: Scope, name: str = "") -> str:
    """Store a new token of `account_id` and return the plain token (it cannot be recovered later)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if account_id < 1:
        raise ValueError(f"account_id must be a positive integer, not {account_id}")
    token = PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as session:
        session.add(ApiToken(account_id=account_id, scope=scope, name=name[:200], token_hash=hash_token(token)))
    return token


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never the token, never its hash."""

    id: int
    account_id: int
    scope: str
    name: str
    created_at: datetime | None


def list_tokens(sessions: sessionmaker[Session], account_id: int | None = None) -> list[TokenInfo]:
    """The tokens of one account (or of every account when None), oldest first."""
    stmt = select(ApiToken.id, ApiToken.account_id, ApiToken.scope, ApiToken.name, ApiToken.created_at)
    if account_id is not None:
        stmt = stmt.where(ApiToken.account_id == account_id)
    with sessions() as session:
        return [TokenInfo(*row) for row in session.execute(stmt.order_by(ApiToken.id))]


def revoke_token(sessions: sessionmaker[Session], token_id: int, account_id: int | None = None) -> str | None:
    """Delete a token (only if it belongs to `account_id`, when given); its hash, or None when there was none.

    The row is gone at once; an API process that validated the token a moment ago keeps accepting it
    until its cache entry expires (api/auth.py TOKEN_CACHE_SEC), and the process that revokes it
    forgets it immediately (the caller evicts the returned hash).
    """
    stmt = delete(ApiToken).where(ApiToken.id == token_id)
    if account_id is not None:
        stmt = stmt.where(ApiToken.account_id == account_id)
    with sessions.begin() as session:
        found = session.execute(stmt.returning(ApiToken.token_hash)).first()
    return None if found is None else str(found[0])


def lookup_token(sessions: sessionmaker[Session], token: str) -> tuple[int, Scope] | None:
    """(account_id, scope) of a valid token, else None.

    No constant-time comparison is needed: the database compares hashes, and learning how many
    leading characters of a SHA-256 matched tells an attacker nothing about any token.
    """
    with sessions() as session:
        row = session.execute(
            select(ApiToken.account_id, ApiToken.scope).where(ApiToken.token_hash == hash_token(token))
        ).first()
    if row is None or row.scope not in SCOPES:
        return None
    return row.account_id, row.scope
