"""``/_sim/*``: inspection and control of the simulator (not part of any provider's API).

These requests are not written to the request record.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .directives import HTTP_FAULT_CODES
from .state import SimConfig, SimState
from .tasks import status_body
from .webhooks import WebhookDispatcher


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, 400)


def apply_config(config: SimConfig, body: dict[str, object]) -> str | None:
    """Apply the keys present in ``body`` to ``config``; return an error message or None."""
    unknown = set(body) - {"submit_fault", "duration_s", "shape", "submit_rate", "submit_rate_retry_after"}
    if unknown:
        return f"unknown config keys: {sorted(unknown)}"
    if "submit_fault" in body:
        fault = body["submit_fault"]
        if fault is None:
            config.submit_fault = None
        elif str(fault).isdigit() and int(str(fault)) in HTTP_FAULT_CODES:
            config.submit_fault = int(str(fault))
        else:
            return f"submit_fault must be null or one of {sorted(HTTP_FAULT_CODES)}"
    if "duration_s" in body:
        duration = body["duration_s"]
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0
        ):
            return "duration_s must be null or a number >= 0"
        config.duration_s = None if duration is None else float(duration)
    if "submit_rate" in body:
        rate = body["submit_rate"]
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
            return "submit_rate must be null or a number > 0"
        config.submit_rate = None if rate is None else float(rate)
    if "submit_rate_retry_after" in body:
        if not isinstance(body["submit_rate_retry_after"], bool):
            return "submit_rate_retry_after must be true or false"
        config.submit_rate_retry_after = body["submit_rate_retry_after"]
    if "shape" in body:
        shape = str(body["shape"]).upper()
        if shape not in ("A", "B"):
            return "shape must be A or B"
        config.shape = "A" if shape == "A" else "B"
    return None


def make_router(state: SimState, hooks: WebhookDispatcher) -> APIRouter:
    """Build the control router (mount it with prefix ``/_sim``)."""
    router = APIRouter(tags=["simulator"])

    @router.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/requests")
    async def requests(
        prompt_contains: str | None = None, task_id: str | None = None, endpoint: str | None = None
    ) -> list[dict[str, object]]:
        return [r.as_dict() for r in state.query_records(prompt_contains, task_id, endpoint)]

    @router.delete("/requests")
    async def clear_requests() -> dict[str, bool]:
        state.clear_records()
        return {"ok": True}

    @router.get("/config")
    async def get_config() -> dict[str, object]:
        with state.lock:
            return state.config.as_dict()

    @router.post("/config")
    async def set_config(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _bad("body must be a JSON object")
        if not isinstance(body, dict):
            return _bad("body must be a JSON object")
        with state.lock:
            # Validate on a copy so a bad request changes nothing.
            candidate = SimConfig(**vars(state.config))
            problem = apply_config(candidate, body)
            if problem is None:
                state.config = candidate
            return _bad(problem) if problem else JSONResponse(candidate.as_dict())

    @router.get("/tasks")
    async def tasks() -> list[dict[str, object]]:
        """Every task with its timing (benchmarks measure detection lag against ``finish_at``)."""
        with state.lock:
            known = list(state.tasks.values())
        return [
            {"task_id": t.task_id, "prompt": t.prompt, "created_at": t.created_at, "finish_at": t.finish_at}
            for t in known
        ]

    @router.post("/tasks/{task_id}/finish")
    async def finish(task_id: str) -> Response:
        task = state.force_finish(task_id)
        if task is None:
            return JSONResponse({"detail": "task not found"}, 404)
        hooks.check(task_id)
        return JSONResponse(status_body(task, state.now()))

    @router.post("/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}

    return router
