"""The API's request metrics, as ASGI middleware."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestMetrics"]


class RequestMetrics:
    """ASGI middleware counting and timing the requests of one path (POST /events, the hot one)."""

    def __init__(self, app: ASGIApp, path: str, registry: CollectorRegistry) -> None:
        self.app = app
        self.path = path
        self.requests = Counter(
            "actionhooks_events_requests", "POST /events requests by status code.", ["status"], registry=registry
        )
        self.latency = Histogram(
            "actionhooks_events_request_duration_seconds",
            "Time to answer POST /events (validation and the durable write included).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.latency.observe(time.perf_counter() - started)
            self.requests.labels(status=str(status)).inc()
