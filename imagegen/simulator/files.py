"""Result files (``GET /files/{task_id}.png``), shared by the providers that answer with URLs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .common import Call
from .errors import Rendered
from .filefaults import file_response, parse_file_plan
from .image2 import TASK_PREFIX as IMAGE2_TASK_PREFIX
from .png import task_png
from .state import SimState
from .tasks import task_view


async def get_file(state: SimState, request: Request, name: str) -> Response:
    """Serve the image of a finished task (as its file directives say); 404 otherwise (like storage
    before upload)."""
    task_id = name.removesuffix(".png")
    task = state.get_task(task_id) if name.endswith(".png") else None
    call = Call(state, request, "file", task_id=task_id)
    if task is not None:
        call.prompt, call.directives = task.prompt, task.directives.tokens
    if task is None or task_view(task, state.now()).status != "finished":
        return call.send(Rendered(Response("not found", 404, media_type="text/plain"), None, None))
    # The provider that created the task decides scoped tokens ([[image2:file404]]).
    provider = "image2" if task_id.startswith(IMAGE2_TASK_PREFIX) else "apidot"
    plan = parse_file_plan(task.directives.tokens, provider)
    served = len(state.query_records(task_id=task_id, endpoint="file"))
    status = plan.status_for(served)
    if status is not None:
        return call.send(Rendered(Response(f"HTTP {status}", status, media_type="text/plain"), None, None))
    return call.send(Rendered(file_response(plan, task_png(task_id)), None, None))


def make_router(state: SimState) -> APIRouter:
    """Build the file-serving router."""
    router = APIRouter(tags=["files"])

    @router.get("/files/{name}")
    async def _file(request: Request, name: str) -> Response:
        return await get_file(state, request, name)

    return router
