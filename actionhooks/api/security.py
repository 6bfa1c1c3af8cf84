"""The API's HTTP surface: offline /docs, security headers on HTML answers, the /metrics token.

/docs is Swagger UI served from the `swagger-ui-bundle` package installed with the engine (no CDN:
the engine works offline and no third party can change the page's script). The page's one inline
script is allowed by its SHA-256 in the Content-Security-Policy, nothing else inline runs.

Every answer carries `X-Content-Type-Options: nosniff`; every HTML answer also a CSP with
`frame-ancestors 'none'` (no clickjacking), `X-Frame-Options: DENY` and `Referrer-Policy:
no-referrer` (not on other answers: a capture redirect must not change what its target sees).
A header the page set itself is kept as it is (the console sets its own CSP and referrer policy).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Annotated

import swagger_ui_bundle
from fastapi import Depends, FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HTML_CSP", "SecurityHeaders", "install_docs", "metrics_access"]

DOCS_ASSETS = "/docs/assets"
HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install_docs(app: FastAPI) -> None:
    """GET /docs from the installed Swagger UI assets (create the app with docs_url=None, redoc_url=None)."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
    ).body
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page.decode())
    )
    # Swagger UI sets style attributes from its script: styles may be inline, scripts only by hash.
    csp = HTML_CSP.replace("script-src 'self'", f"script-src 'self' {hashes}").replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": csp})


class SecurityHeaders:
    """ASGI middleware adding the security headers to every answer (the CSP to HTML ones)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                wanted = [(b"x-content-type-options", b"nosniff")]
                if dict(headers).get(b"content-type", b"").startswith(b"text/html"):
                    # x-frame-options for browsers without CSP frame-ancestors
                    wanted += [(b"content-security-policy", HTML_CSP.encode()), (b"x-frame-options", b"DENY"),
                               (b"referrer-policy", b"no-referrer")]
                # A page that set its own (a stricter CSP, another referrer policy) keeps it.
                headers += [(name, value) for name, value in wanted if name not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


_bearer = HTTPBearer(auto_error=False, description="METRICS_TOKEN from main.json, when it is set.")


def metrics_access(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """/metrics shows figures of every account: when METRICS_TOKEN is set, only its bearer may read them."""
    expected: str = request.app.state.settings.METRICS_TOKEN
    if not expected:
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        detail = [{"loc": ["header", "Authorization"], "msg": "/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'",
                   "type": "invalid_token"}]
        raise HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
