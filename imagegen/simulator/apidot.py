"""The fake APIDot API: submit, status and webhook-secret endpoints (mounted at the root)."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .aftercreate import answer_after_create
from .common import Call, bearer_ok
from .directives import Directives, Fault, parse_directives, pick_fault
from .errors import NOT_FOUND, UNAUTHORIZED, invalid_request, render_error, render_fault
from .state import SimState
from .tasks import Task, status_body, task_view
from .validation import validate_submit
from .webhooks import WebhookDispatcher


def _parse_payload(raw: bytes) -> dict[str, object] | None:
    """The JSON object body, or None if it is not one."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _prompt_of(payload: dict[str, object] | None) -> str | None:
    data = payload.get("input") if payload is not None else None
    prompt = data.get("prompt") if isinstance(data, dict) else None
    return prompt if isinstance(prompt, str) else None


def _image_urls_of(payload: dict[str, object] | None) -> tuple[str, ...] | None:
    data = payload.get("input") if payload is not None else None
    urls = data.get("image_urls") if isinstance(data, dict) else None
    return tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else None


def _create_task(state: SimState, request: Request, payload: dict[str, object], prompt: str) -> Task:
    directives = parse_directives(prompt)
    callback = payload.get("callback_url")
    with state.lock:
        shape = "B" if directives.shape_b else state.config.shape
    return Task(
        task_id=state.new_task_id(),
        prompt=prompt,
        model=str(payload["model"]),
        directives=directives,
        created_at=state.now(),
        duration_s=state.sample_duration(directives.duration_s),
        shape=shape,
        base_url=str(request.base_url).rstrip("/"),
        callback_url=callback if isinstance(callback, str) and callback else None,
    )


async def submit(state: SimState, hooks: WebhookDispatcher, request: Request) -> Response:
    """``POST /api/generate/submit``: auth, injected faults, validation, then a new task."""
    payload = _parse_payload(await request.body())
    prompt = _prompt_of(payload)
    directives = parse_directives(prompt) if prompt else Directives()
    call = Call(state, request, "submit", prompt=prompt, directives=directives.tokens)
    call.image_urls = _image_urls_of(payload)
    detail = directives.detail
    if not bearer_ok(request):
        return call.send(render_error(UNAUTHORIZED, detail=detail))
    if payload is None:
        return call.send(render_error(invalid_request("request body must be a JSON object"), detail=detail))
    with state.lock:
        global_fault = state.config.submit_fault
    if global_fault is not None:
        # The global fault does not consume the prompt's directive counts.
        return call.send(render_fault(Fault(str(global_fault)), detail=detail, now=state.now()))
    if not state.submit_allowed():
        with state.lock:
            limited = Fault("429") if state.config.submit_rate_retry_after else Fault("429", retry_after="none")
        return call.send(render_fault(limited, detail=detail, now=state.now()))
    index = state.next_submit_call(prompt) if prompt else 0
    fault = pick_fault(directives.submit_faults, index)
    if fault is not None:
        return call.send(render_fault(fault, detail=detail, now=state.now()))
    problem = validate_submit(payload)
    if problem is not None or prompt is None:
        return call.send(render_error(invalid_request(problem or "prompt is required"), detail=detail))

    task = _create_task(state, request, payload, prompt)
    state.add_task(task)
    hooks.schedule(task)
    call.task_id = task.task_id
    body: dict[str, object] = {
        "code": task.success_code,
        "data": {"task_id": task.task_id, "status": "not_started", "created_time": task.created_time},
    }
    after = pick_fault(directives.created_faults, index)
    if after is not None:
        noid = {"code": task.success_code, "data": {"status": "not_started"}}
        return await answer_after_create(call, body, noid, after)
    # Recorded (and the task created) before any hang, so a client that times out still
    # leaves the upstream task behind, as a real slow upstream would.
    response = call.send_json(body)
    if directives.hang_s > 0 and (directives.hang_count is None or index < directives.hang_count):
        await asyncio.sleep(directives.hang_s)
    return response


async def status(state: SimState, hooks: WebhookDispatcher, request: Request, task_id: str) -> Response:
    """``GET /api/generate/status/{task_id}``: poll faults, then the task as of now."""
    task = state.get_task(task_id)
    call = Call(state, request, "status", task_id=task_id)
    detail = False
    if task is not None:
        call.prompt, call.directives, detail = task.prompt, task.directives.tokens, task.directives.detail
    if not bearer_ok(request):
        return call.send(render_error(UNAUTHORIZED, detail=detail))
    if task is None:
        return call.send(render_error(NOT_FOUND, detail=False))
    fault = pick_fault(task.directives.poll_faults, state.next_poll_call(task))
    if fault is not None:
        return call.send(render_fault(fault, detail=detail, now=state.now()))
    now = state.now()
    response = call.send_json(status_body(task, now))
    if task_view(task, now).terminal:
        # Lazy trigger; the scheduler covers tasks nobody polls.
        hooks.check(task_id)
    return response


async def webhook_secret(state: SimState, request: Request) -> Response:
    """``GET /api/api-keys/webhook-secret``: the key webhooks are signed with (PoYo has this)."""
    call = Call(state, request, "secret")
    if not bearer_ok(request):
        return call.send(render_error(UNAUTHORIZED, detail=False))
    return call.send_json({"code": 200, "data": {"webhook_secret": state.settings.webhook_secret}})


def make_router(state: SimState, hooks: WebhookDispatcher) -> APIRouter:
    """Build the APIDot router bound to shared state and webhook dispatcher."""
    router = APIRouter(tags=["apidot"])

    @router.post("/api/generate/submit")
    async def _submit(request: Request) -> Response:
        return await submit(state, hooks, request)

    @router.get("/api/generate/status/{task_id}")
    async def _status(request: Request, task_id: str) -> Response:
        return await status(state, hooks, request, task_id)

    @router.get("/api/api-keys/webhook-secret")
    async def _secret(request: Request) -> Response:
        return await webhook_secret(state, request)

    return router
