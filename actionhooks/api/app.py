"""The API application: create_app(settings) wires storage, auth, error handlers and routers.

Nothing is global: two apps on two databases can live in one process (the tests do that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actionhooks import __version__, console, tracing
from actionhooks.api.auth import TokenCache
from actionhooks.api.errors import error_body, install_error_handlers
from actionhooks.api.routes import (
    backfills,
    capture,
    catalog,
    deliveries,
    events,
    health,
    hooks,
    profiles,
    quarantine,
    sources,
    tokens,
)
from actionhooks.api.security import SecurityHeaders, install_docs
from actionhooks.api.triggers import app_triggers, close_triggers
from actionhooks.capture.context import CaptureContext, CaptureMetrics, SourceCache
from actionhooks.observability.cluster import ClusterMetrics
from actionhooks.observability.liveness import LivenessCache
from actionhooks.observability.metrics import (
    CommitMetrics,
    hook_rejections_counter,
    metrics_registry,
    overloaded_counter,
    rejections_counter,
)
from actionhooks.observability.middleware import RequestMetrics
from actionhooks.settings import Settings
from actionhooks.storage.committer import GroupCommitter
from actionhooks.storage.db import engine_from_settings, session_factory
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.sources import SqlSourceRepository

__all__ = ["CONFIG_MAX_BODY_BYTES", "create_app"]

API_PREFIX = "/api/v1"
EVENTS_PATH = f"{API_PREFIX}/events"
# Hook, catalog and profile bodies; a bulk of 1,000 profiles with a few KB of fields each fits.
CONFIG_MAX_BODY_BYTES = 4 * 1024 * 1024

DESCRIPTION = """Action hooks: capture subscriber events and deliver them to HTTP, RabbitMQ and Kafka receivers.

Every `/api/v1` call needs `Authorization: Bearer <token>` (create one with `actionhooks token create`).
An `admin` token may do everything for its account; an `ingest` token may only send events.
Errors are `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.
"""


class App(FastAPI):
    """FastAPI with the public capture paths (/t/…) answered before its middleware stack is entered.

    Middleware added with `add_middleware` still runs inside Starlette's error middleware and
    FastAPI's telemetry and body-limit wrappers, which cost a pixel hit ~10% of the API's CPU
    (an environment look-up per request among them: bench/capture.py under py-spy). Capture needs
    none of them: it bounds its own inputs and answers its own errors.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(capture.PREFIX):
            await capture.serve(self, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """Build the API on `engine` (default: DATABASE_URL), migrating the database first."""
    owns_engine = engine is None
    engine = engine if engine is not None else engine_from_settings(settings)
    upgrade(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.committer.close()
        close_triggers(_app.state)
        if owns_engine:
            engine.dispose()

    app = App(
        title="actionhooks", version=__version__, description=DESCRIPTION, lifespan=lifespan, docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.tokens = TokenCache(app.state.sessions)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, events_max=settings.EVENTS_MAX_REQUEST_BYTES)
    app.state.liveness = LivenessCache(engine)
    app.state.write_health = app.state.liveness.writes
    app.state.metrics = metrics_registry(app.state.liveness)
    app.state.metrics.register(ClusterMetrics(engine))  # the workers' figures, cluster-wide
    tracing.configure()
    app.state.rejections = rejections_counter(app.state.metrics)
    app.state.hook_rejections = hook_rejections_counter(app.state.metrics)
    app.state.overloaded = overloaded_counter(app.state.metrics)
    # The API's one intake writer: POST /events and capture requests share its transactions.
    app.state.committer = GroupCommitter(
        app.state.sessions,
        dedup_window_sec=settings.EVENT_DEDUP_HOURS * 3600,
        on_signal=lambda account_id: app_triggers(app.state).route(account_id),
        on_batch=CommitMetrics(app.state.metrics).observe,
        archive=settings.EVENT_ARCHIVE_HOURS > 0,
    )
    app.add_middleware(RequestMetrics, path=EVENTS_PATH, registry=app.state.metrics)  # outermost: 413s count
    install_docs(app)
    app.include_router(health.router)
    # events first: routes are matched in order, and POST /events is the request that comes by the thousand
    for module in (events, hooks, catalog, profiles, deliveries, quarantine, sources, backfills, tokens):
        app.include_router(module.router, prefix=API_PREFIX)
    console.mount(app)
    app.add_middleware(SecurityHeaders)  # outside the console's: it sees, and keeps, the headers a page set
    app.state.capture = _capture_context(app, settings)
    return app


# Webhook capture bodies: a JSON array of up to WEBHOOK_MAX_OBJECTS objects within this size.
WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
WEBHOOK_MAX_OBJECTS = 1000


def _capture_context(app: FastAPI, settings: Settings) -> CaptureContext:
    return CaptureContext(
        sources=SourceCache(SqlSourceRepository(app.state.sessions).by_key),
        committer=app.state.committer,
        metrics=CaptureMetrics(app.state.metrics),
        max_body_bytes=WEBHOOK_MAX_BODY_BYTES,
        max_events_per_request=WEBHOOK_MAX_OBJECTS,
    )


class BodyLimit:
    """413 for a body over the limit: by Content-Length at once, or by counting a chunked body.

    POST /events may carry EVENTS_MAX_REQUEST_BYTES; every other body is configuration and gets
    CONFIG_MAX_BODY_BYTES. Counting happens before the JSON parser sees the bytes, so an oversized
    body never costs more memory than the limit. The counting path raises an HTTPException, which
    FastAPI lets through its body reader to the error handlers (same JSON shape as every 4xx).
    """

    def __init__(self, app: ASGIApp, events_max: int) -> None:
        self.app = app
        self.events_max = events_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.events_max if scope["path"] == EVENTS_PATH else CONFIG_MAX_BODY_BYTES
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            body = orjson.dumps({"detail": _too_large(limit)})
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, detail=_too_large(limit))
            return message

        await self.app(scope, counting_receive, send)


def _too_large(limit: int) -> list[dict[str, object]]:
    return error_body([(["body"], f"request body is larger than {limit} bytes", "too_large")])["detail"]
