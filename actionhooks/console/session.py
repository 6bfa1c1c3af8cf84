"""Console sign-in, CSRF protection and the security headers of every console response.

Session: signing in with an admin token opens a console session (storage/console_sessions.py) and the
cookie carries that session's own secret, never the admin token: `HttpOnly` (no script can read it),
`SameSite=Strict` (no other site's page sends it), `Secure` when the request came over HTTPS, scoped
to /console. Each request looks the session up in the database, so "Log out" ends it for every copy
of the cookie and in every API process, and revoking the admin token ends its sessions too.

CSRF: a synchronizer token bound to the session, HMAC-SHA256 of a fixed label keyed with the session's
token: it cannot be computed without the token and needs no storage. Every POST must carry it (a form
field, or the X-CSRF-Token header htmx sends), and a POST whose Origin (or Sec-Fetch-Site) says it
comes from another site is refused before anything runs. Log in has no session yet, so it relies on
the Origin check alone.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actionhooks.api.auth import Principal
from actionhooks.storage.console_sessions import session_account

__all__ = [
    "COOKIE",
    "ConsoleHeaders",
    "CsrfRejected",
    "LoginRequired",
    "check_post",
    "csrf_token",
    "principal_of",
    "read_form",
]

COOKIE = "actionhooks_console"
COOKIE_PATH = "/console"
SESSION_MAX_AGE_SEC = 8 * 3600
MAX_FORM_FIELDS = 2_000
_CSRF_LABEL = b"actionhooks console csrf v1"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class LoginRequired(Exception):
    """No valid admin session: the console answers with the login page."""


class CsrfRejected(Exception):
    """A state-changing request without this session's CSRF token, or from another site."""


def principal_of(request: Request) -> tuple[Principal, str]:
    """The session's admin principal and its secret, or LoginRequired."""
    secret = request.cookies.get(COOKIE)
    if not secret or len(secret) > 200:
        raise LoginRequired
    account_id = session_account(request.app.state.sessions, secret)
    if account_id is None:
        raise LoginRequired
    return Principal(account_id, "admin"), secret


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin or Sec-Fetch-Site)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # old browsers and non-browser clients; the CSRF token still has to match
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def read_form(request: Request) -> list[tuple[str, str]]:
    """The urlencoded body's pairs (the app's BodyLimit already bounds its size)."""
    body = await request.body()
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise CsrfRejected from None  # not a form this console produced


def check_post(request: Request, form: list[tuple[str, str]], session_token: str) -> None:
    """CsrfRejected unless the request is same-site and carries the session's CSRF token."""
    if not same_origin(request):
        raise CsrfRejected
    sent = request.headers.get("x-csrf-token") or next((v for k, v in form if k == "csrf"), "")
    if not hmac.compare_digest(sent.encode(), csrf_token(session_token).encode()):
        raise CsrfRejected


class ConsoleHeaders:
    """Adds the console's security headers to every response under /console (pages, fragments, files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(COOKIE_PATH):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
