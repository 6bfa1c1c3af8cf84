"""The console: master users configure, test and repair their hooks in a browser at /console/.

`mount(app)` adds its pages, its static files (CSS, the console's script and the vendored htmx) and
the security headers of every /console response to the API app.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from actionhooks.console.routes import HERE, router
from actionhooks.console.session import ConsoleHeaders

__all__ = ["mount"]


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_middleware(ConsoleHeaders)
