"""Operations routes: ``/healthz`` and ``/metrics`` (never behind auth: probes and scrapers have no token)."""

from __future__ import annotations

import logging
from typing import Any

import redis
import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from imagegen.api.schemas import Health
from imagegen.api.state import RuntimeDep, SettingsDep

log = logging.getLogger(__name__)
router = APIRouter()

#: A health probe must answer quickly even when Redis is a black hole.
BROKER_TIMEOUT_S = 1.0


def broker_reachable(url: str, timeout: float = BROKER_TIMEOUT_S) -> bool:
    """Whether the Redis broker answers PING within ``timeout``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness of the API, its database and its broker",
    responses={503: {"model": Health, "description": "The database or the broker does not answer"}},
)
def healthz(rt: RuntimeDep, settings: SettingsDep) -> JSONResponse:
    """200 when ``SELECT 1`` and a Redis PING both succeed, else 503 saying which one failed."""
    try:
        with rt.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError:
        log.warning("health check: database unavailable", exc_info=True)
        database = "unavailable"
    broker = "ok" if broker_reachable(settings.redis_url) else "unreachable"
    ok = database == "ok" and broker == "ok"
    body: dict[str, Any] = {"ok": ok, "database": database, "broker": broker}
    return JSONResponse(body, status_code=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
def metrics(request: Request) -> Response:
    """Jobs by status and error kind, and paused providers, read from the database at scrape time."""
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
