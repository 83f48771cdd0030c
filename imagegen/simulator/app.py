"""Assembly of the simulator app: one shared state, one router per provider, control endpoints."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from . import apidot, control, files, image2, openai
from .settings import SimSettings
from .state import Clock, SimState
from .webhooks import WebhookDispatcher

__all__ = ["SimSettings", "create_app", "run"]


def create_app(settings: SimSettings | None = None, *, clock: Clock = time.time) -> FastAPI:
    """Build the simulator. Without ``settings`` they are read with :meth:`SimSettings.from_env`.

    ``clock`` (unix seconds) is injectable so tests can move time instead of sleeping.
    """
    settings = settings or SimSettings.from_env()
    state = SimState(settings, clock=clock)
    hooks = WebhookDispatcher(state, settings.webhook_secret, settings.webhook_retry_base_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        hooks.stop()

    app = FastAPI(title="imagegen provider simulator", lifespan=lifespan)
    # Providers share state and record; each lives under its own prefix
    # (APIDot at the root, OpenAI under /openai/v1, image2 under /image2/api/v1).
    app.include_router(apidot.make_router(state, hooks))
    app.include_router(openai.make_router(state), prefix="/openai/v1")
    app.include_router(image2.make_router(state), prefix="/image2/api/v1")
    app.include_router(files.make_router(state))
    app.include_router(control.make_router(state, hooks), prefix="/_sim")
    app.state.sim = state
    app.state.webhooks = hooks
    return app


def run(host: str, port: int) -> None:
    """Serve the simulator with uvicorn (blocking), settings from the environment."""
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
