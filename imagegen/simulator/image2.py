"""The fake image2.vip API (an OpenAI-shaped async relay), mounted under ``/image2/api/v1``.

``POST /images/generations`` with ``"async": true`` creates a task; ``GET /images/tasks/{task_id}``
reports ``pending`` → ``processing`` (with ``progress``) → ``completed`` (``data[].url`` served by the
shared ``/files/{task_id}.png`` route) or ``failed`` (``error`` only then). Tasks are the same
time-driven :class:`Task` objects as APIDot's, so the outcome directives, ``/_sim/tasks/{id}/finish``
and the file route work unchanged; errors are OpenAI-shaped.
"""

from __future__ import annotations

import asyncio
import secrets
import string

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .aftercreate import answer_after_create
from .common import bearer_ok
from .directives import Directives, parse_directives, pick_fault
from .errors import (
    OPENAI_UNAUTHORIZED,
    OpenAIError,
    openai_invalid,
    render_openai_error,
    render_openai_fault,
)
from .openai import MAX_PROMPT, OpenAICall, parse_json_object, size_problem
from .state import SimState
from .tasks import Task, task_view

TASK_PREFIX = "img2-"
COUNTER_PREFIX = "image2\x00"
MAX_IMAGES = 16
QUALITIES = ("low", "medium", "high", "auto")
# The shared task lifecycle's statuses, in image2's words.
_STATUS = {
    "not_started": "pending",
    "queued": "pending",
    "running": "processing",
    "processing": "processing",
    "finished": "completed",
    "failed": "failed",
}
# How each failure outcome is reported in the task's ``error`` object.
_ERROR_TAGS = {
    "statusfail": ("server_error", "generation_failed"),
    "safetyfail": ("image_generation_user_error", "moderation_blocked"),
}
_ID_ALPHABET = string.ascii_lowercase + string.digits


def not_found(task_id: str) -> OpenAIError:
    """The unknown-task error (LemonData's code for the same case)."""
    return OpenAIError(404, f"Task '{task_id[:100]}' not found.", "invalid_request_error", "async_task_not_found")


def check_submit(payload: dict[str, object]) -> OpenAIError | None:
    """Validate a submit body: model, prompt, n = 1, size, quality, ``image`` URLs, ``async: true``."""
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return openai_invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return openai_invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if len(prompt) > MAX_PROMPT:
        return openai_invalid(f"Invalid 'prompt': longer than {MAX_PROMPT} characters.", "prompt")
    n = payload.get("n", 1)
    if n != 1 or isinstance(n, bool):
        return openai_invalid("Invalid 'n': async tasks produce one image; send n = 1.", "n")
    if payload.get("size") is not None and (problem := size_problem(payload["size"], "gpt-image-2")) is not None:
        return problem
    if payload.get("quality") is not None and payload["quality"] not in QUALITIES:
        return openai_invalid(f"Invalid value: '{payload['quality']}'. Supported values are: {QUALITIES}.", "quality")
    images = payload.get("image")
    if images is not None and not (
        isinstance(images, list)
        and len(images) <= MAX_IMAGES
        and all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in images)
    ):
        return openai_invalid(f"Invalid 'image': expected a list of at most {MAX_IMAGES} image URLs.", "image")
    if payload.get("async") is not True:
        # Only the documented async mode is simulated; a client that forgets the flag should notice.
        return openai_invalid('This endpoint is simulated in async mode only: send "async": true.', "async")
    return None


def _new_task(state: SimState, request: Request, payload: dict[str, object], prompt: str, d: Directives) -> Task:
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    return Task(
        task_id=f"{TASK_PREFIX}{int(state.now())}-{suffix}",
        prompt=prompt,
        model=str(payload["model"]),
        directives=d,
        created_at=state.now(),
        duration_s=state.sample_duration(d.duration_s),
        shape="A",
        base_url=str(request.base_url).rstrip("/"),
    )


def task_body(task: Task, now: float) -> dict[str, object]:
    """The task-status body as of ``now``; ``data`` is filled only when completed, ``error`` only when failed."""
    view = task_view(task, now)
    status = _STATUS.get(view.status, "processing")
    body: dict[str, object] = {
        "task_id": task.task_id,
        "created": int(task.created_at),
        "status": status,
        "progress": view.progress,
        "data": [],
    }
    if status == "completed":
        body["data"] = [{"url": task.file_url, "revised_prompt": task.prompt, "status": "completed"}]
    elif status == "failed":
        err_type, code = _ERROR_TAGS.get(task.directives.outcome, ("server_error", None))
        body["error"] = {"message": view.error_message, "type": err_type, "code": code}
    return body


async def submit(state: SimState, request: Request) -> Response:
    """``POST /images/generations``: auth, faults, validation, then a pending task."""
    payload = parse_json_object(await request.body())
    raw_prompt = payload.get("prompt") if payload is not None else None
    prompt = raw_prompt if isinstance(raw_prompt, str) else None
    directives = parse_directives(prompt, provider="image2") if prompt else Directives()
    call = OpenAICall(state, request, "submit", provider="image2", prompt=prompt, directives=directives.tokens)
    if not bearer_ok(request):
        return call.send(render_openai_error(OPENAI_UNAUTHORIZED))
    if payload is None:
        return call.send(render_openai_error(openai_invalid("We could not parse the JSON body of your request.")))
    index = state.next_submit_call(COUNTER_PREFIX + prompt) if prompt else 0
    fault = pick_fault(directives.submit_faults, index)
    if fault is not None:
        return call.send(render_openai_fault(fault, now=state.now()))
    problem = check_submit(payload)
    if problem is not None or prompt is None:
        return call.send(render_openai_error(problem or openai_invalid("prompt is required", "prompt")))
    task = _new_task(state, request, payload, prompt, directives)
    state.add_task(task)
    call.task_id = task.task_id
    body: dict[str, object] = {
        "created": int(task.created_at),
        "task_id": task.task_id,
        "status": "pending",
        "data": [{"url": None, "status": "pending"}],
    }
    after = pick_fault(directives.created_faults, index)
    if after is not None:
        return await answer_after_create(call, body, {"created": body["created"], "status": "pending"}, after)
    # Recorded (and the task created) before any hang, as for APIDot.
    response = call.send_json(body)
    if directives.hang_s > 0 and (directives.hang_count is None or index < directives.hang_count):
        await asyncio.sleep(directives.hang_s)
    return response


async def status(state: SimState, request: Request, task_id: str) -> Response:
    """``GET /images/tasks/{task_id}``: poll faults, then the task as of now."""
    # The id prefix keeps APIDot's tasks invisible here (they share the task table).
    task = state.get_task(task_id) if task_id.startswith(TASK_PREFIX) else None
    call = OpenAICall(state, request, "status", provider="image2", task_id=task_id)
    if task is not None:
        call.prompt, call.directives = task.prompt, task.directives.tokens
    if not bearer_ok(request):
        return call.send(render_openai_error(OPENAI_UNAUTHORIZED))
    if task is None:
        return call.send(render_openai_error(not_found(task_id)))
    fault = pick_fault(task.directives.poll_faults, state.next_poll_call(task))
    if fault is not None:
        return call.send(render_openai_fault(fault, now=state.now()))
    return call.send_json(task_body(task, state.now()))


def make_router(state: SimState) -> APIRouter:
    """Build the image2 router (mount it with prefix ``/image2/api/v1``)."""
    router = APIRouter(tags=["image2"])

    @router.post("/images/generations")
    async def _submit(request: Request) -> Response:
        return await submit(state, request)

    @router.get("/images/tasks/{task_id}")
    async def _status(request: Request, task_id: str) -> Response:
        return await status(state, request, task_id)

    return router
