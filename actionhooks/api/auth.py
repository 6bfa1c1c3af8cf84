"""Bearer tokens, scopes and the account every request acts for.

Tokens are looked up by their SHA-256 (tokens.py explains why a plain hash suffices and why no
constant-time comparison is needed). Valid tokens are cached in-process for a few seconds, so
POST /events at hundreds of requests a second costs a dict lookup, not a database round trip; the
price is that a token removed from the database (`actionhooks token revoke`, DELETE /tokens/{id})
keeps working for up to TOKEN_CACHE_SEC in an API process that validated it just before (the
process that revokes it through the API forgets it at once).
Invalid tokens are never cached, so the cache cannot be filled by guessing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage.tokens import hash_token, lookup_token

__all__ = ["Admin", "AnyPrincipal", "Principal", "TokenCache", "admin_principal", "any_principal"]

TOKEN_CACHE_SEC = 5.0
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's account (every query is scoped by it) and its scope."""

    account_id: int
    scope: str


class TokenCache:
    """token hash -> (Principal, expiry); thread-safe because sync endpoints run in a thread pool."""

    def __init__(self, sessions: sessionmaker[Session], ttl: float = TOKEN_CACHE_SEC) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def forget(self, key: str) -> None:
        """Drop one token hash (a token this process just revoked stops working at once here)."""
        with self._lock:
            self._entries.pop(key, None)

    def principal(self, token: str) -> Principal | None:
        key = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = lookup_token(self._sessions, token)
        if found is None:
            return None
        principal = Principal(*found)
        with self._lock:
            if len(self._entries) >= _CACHE_MAX:
                self._entries.clear()
            self._entries[key] = (principal, now + self._ttl)
        return principal


_bearer = HTTPBearer(auto_error=False, description="An API token from `actionhooks token create`.")


def _problem(status: int, msg: str, kind: str, headers: dict[str, str] | None = None) -> HTTPException:
    detail: list[dict[str, Any]] = [{"loc": ["header", "Authorization"], "msg": msg, "type": kind}]
    return HTTPException(status_code=status, detail=detail, headers=headers)


def any_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Any valid token, admin or ingest (POST /events)."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise _problem(401, "missing 'Authorization: Bearer <token>' header", "missing_token", challenge)
    principal = request.app.state.tokens.principal(credentials.credentials)
    if principal is None:
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        raise _problem(401, "invalid or unknown API token", "invalid_token", challenge)
    return principal


def admin_principal(principal: Annotated[Principal, Depends(any_principal)]) -> Principal:
    """An admin token; an ingest token may only send events (403)."""
    if principal.scope != "admin":
        raise _problem(
            403, f"a {principal.scope} token may only send events; this call needs an admin token", "forbidden"
        )
    return principal


AnyPrincipal = Annotated[Principal, Depends(any_principal)]
Admin = Annotated[Principal, Depends(admin_principal)]
