"""The console: master users configure, test and repair their hooks in a browser at /console/.

`mount(app)` adds its pages, its static files (CSS, the console's script and the vendored htmx) and
the security headers of every /console response to the API app.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import Counter

from actionhooks.console import sources
from actionhooks.console.routes import HERE, router
from actionhooks.console.session import ConsoleHeaders

__all__ = ["mount"]


def mount(app: FastAPI) -> None:
    app.state.console_refused = Counter(
        "actionhooks_console_refused",
        "Console requests refused: a POST without this session's CSRF token or from another site (csrf), "
        "a login with a token that is not an admin token (login), "
        "another account's or a missing hook or source (not_found).",
        ["reason"],
        registry=app.state.metrics,
    )
    app.include_router(router)
    app.include_router(sources.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_middleware(ConsoleHeaders)
