"""GET /healthz (no auth) and GET /metrics (Prometheus text).

/healthz answers 503 when the database is unreachable or cannot write (disk full, read-only: nothing
can progress, and POST /events answers 503 too); a stalled pipeline keeps it 200 but shows in
`details` (observability/liveness.py), which is what alerting should watch: `oldest_queued_age_sec` growing,
`last_delivery_at` getting old, `quarantined_events` above 0.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from actionhooks.api.security import metrics_access

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="200 while the database answers and writes (else 503, with the reason), with progress details",
)
def healthz(request: Request) -> JSONResponse:
    try:
        live = request.app.state.liveness.get()
    except SQLAlchemyError as exc:
        return JSONResponse(
            {"status": "error", "checks": {"database": f"error: {type(exc).__name__}"}}, status_code=503
        )
    problem = request.app.state.write_health.problem()
    if problem is not None:
        return JSONResponse(
            {"status": "error", "checks": {"database": f"cannot write: {problem}"}, "details": live.details()},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "checks": {"database": "ok"}, "details": live.details()})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, dependencies=[Depends(metrics_access)])
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
