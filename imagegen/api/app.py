"""The FastAPI application: intake (``/v1``), upstream webhooks, health and metrics (README, 'Using it').

``create_app`` is the factory (``uvicorn --factory imagegen.api.app:create_app`` or ``imagegen api``).
Tests inject a runtime and a recording publisher; production builds both at startup, so a database
whose schema is behind stops the process before it serves anything.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.settings import Settings, get_settings
from imagegen.api import batches, events, images, jobs, openai_compat, ops, providers, uploads, webhooks
from imagegen.api.allow import allow_every_method
from imagegen.api.auth import require_token
from imagegen.api.bodylimit import WEBHOOK_MAX_BODY_BYTES, BodyLimit
from imagegen.api.metrics import build_registry
from imagegen.api.openai_shapes import OpenAICompatError
from imagegen.api.schemas import BatchRequest, JobRequest, Message
from imagegen.api.state import ApiState, WebhookReceiver
from imagegen.errors import ImagegenError
from imagegen.messages import Publisher
from imagegen.runtime import Runtime

log = logging.getLogger(__name__)

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    413: {"model": Message, "description": "Request body over its cap (IMAGEGEN_API_MAX_BODY_BYTES; webhooks 64 KiB)"},
    503: {"model": Message, "description": "Database unavailable"},
}


def create_app(
    *,
    runtime: Runtime | None = None,
    publisher: Publisher | None = None,
    settings: Settings | None = None,
    webhook_receiver: WebhookReceiver | None = None,
) -> FastAPI:
    """Build the API. Anything not given is built at startup (``webhook_receiver``: ``imagegen.webhooks.inbound``)."""
    settings = settings or (runtime.settings if runtime is not None else get_settings())
    state = ApiState(settings, runtime, publisher, webhook_receiver)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            state.runtime()
            state.publisher()
        except ImagegenError as exc:  # SchemaBehind: one clear line, then uvicorn exits
            log.error("imagegen api cannot start: %s", exc)
            raise
        await state.feed.start()
        try:
            yield
        finally:
            await state.feed.stop()
            state.close()

    app = FastAPI(
        title="imagegen-queue",
        version="0.1.0",
        summary="Queue image-generation jobs, watch them, and receive upstream callbacks.",
        lifespan=lifespan,
    )
    app.state.api = state
    app.state.metrics = build_registry(state.runtime)

    # Auth guards the intake only; probes, scrapers and providers have no intake token.
    intake_deps = [require_token(settings.token_tenants, settings.admin_tokens)] if settings.auth_enabled else []
    for intake in (jobs.router, images.router, events.router, batches.router, providers.router):
        app.include_router(intake, dependencies=intake_deps, responses=_intake_responses(bool(intake_deps)))
    # OpenAI's SDK must see OpenAI's error shape, the 401 included: these routes check the token themselves.
    app.include_router(openai_compat.router, dependencies=openai_compat.DOCUMENTED_AUTH if intake_deps else [])
    app.add_exception_handler(OpenAICompatError, openai_compat.answer_error)
    # Providers fetch reference images here; each URL is signed for its one upload.
    app.include_router(uploads.router)
    app.include_router(webhooks.router, responses=_UNAVAILABLE)
    app.include_router(ops.router)
    app.add_exception_handler(SQLAlchemyError, _database_unavailable)
    routed = [jobs.router, batches.router, providers.router, images.router, events.router, openai_compat.router]
    app.add_exception_handler(StarletteHTTPException, allow_every_method(routed))
    cap = settings.imagegen_api_max_body_bytes
    app.add_middleware(BodyLimit, max_bytes=cap, overrides=[("/webhooks/", min(cap, WEBHOOK_MAX_BODY_BYTES))])
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _intake_responses(auth: bool) -> dict[int | str, dict[str, Any]]:
    if not auth:
        return dict(_UNAVAILABLE)
    return {**_UNAVAILABLE, 401: {"model": Message, "description": "Missing or invalid bearer token"}}


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # A store failure is an outage, not a bug in the caller's request: 503, and no traceback in the body.
    log.warning("database error: %s", exc.__class__.__name__, exc_info=exc)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request-body models it cannot see (bodies are validated by the core)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes, description=app.description
        )
        _, defs = models_json_schema(
            [(JobRequest, "validation"), (BatchRequest, "validation")], ref_template="#/components/schemas/{model}"
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
    return app.openapi_schema
