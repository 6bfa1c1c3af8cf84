"""The capture kinds' shared interface: a kind that tries to capture for a request with no source."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from actionhooks.capture.context import CaptureContext, CaptureMetrics, SourceCache
from actionhooks.capture.kinds.base import Call, NoSource
from actionhooks.capture.request import Env
from actionhooks.storage.committer import GroupCommitter
from actionhooks.storage.tables import Intake


def test_capturing_without_a_source_is_a_typed_error_and_stores_nothing(sessions: sessionmaker[Session]) -> None:
    registry = CollectorRegistry()
    metrics = CaptureMetrics(registry)
    committer = GroupCommitter(sessions, dedup_window_sec=60, on_signal=lambda _account: None)
    ctx = CaptureContext(sources=SourceCache(lambda _key: None), committer=committer, metrics=metrics,
                         max_body_bytes=1024, max_events_per_request=10)
    request = Request({"type": "http", "method": "GET", "path": "/t/k/p.gif", "headers": []})
    call = Call(ctx=ctx, request=request, source=None, endpoint="p.gif")
    env = Env(arrived_ns=0, ip=None, user_agent="", referer=None, visitor_id=None, set_cookie=None)

    async def capture() -> None:
        try:
            await call.capture("pixel", env, [{"event_id": "e-1"}])
        finally:
            await committer.close()

    # When a kind's bug makes it capture a stranger's request (no source of its kind)
    with pytest.raises(NoSource, match="pixel"):
        asyncio.run(capture())
    # Then it fails loudly, also under python -O: not stored, not counted as a database failure
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Intake)) == 0
    failed = registry.get_sample_value("actionhooks_capture_refused_total", {"kind": "pixel", "reason": "store_failed"})
    assert (failed or 0) == 0
