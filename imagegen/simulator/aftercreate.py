"""Submits that create the upstream task and then lose the answer (``[[submitstall:S]]``,
``[[submitdrop]]``, ``[[submitlost:502|504|noid]]``): the paid-twice window a client must handle.

The task exists and is recorded (with its id) before anything goes wrong, as with a real upstream
whose gateway times out or whose connection breaks after the work was accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi.responses import HTMLResponse, Response, StreamingResponse

from .common import Call
from .directives import AfterCreate
from .errors import Rendered


class SimulatedDrop(ConnectionAbortedError):
    """Raised mid-answer so the server closes the connection (the client sees an incomplete body)."""


async def _half_then_drop() -> AsyncIterator[bytes]:
    yield b'{"code": 200, "data": {"task'
    await asyncio.sleep(0.05)  # let the first chunk reach the client before the connection breaks
    raise SimulatedDrop("simulated connection drop after the task was created")


async def answer_after_create(
    call: Call, body: dict[str, object], noid_body: dict[str, object], fault: AfterCreate
) -> Response:
    """Answer a submit whose task (``call.task_id``) was just created, the way ``fault`` says."""
    if fault.kind == "stall":
        response = call.send_json(body)
        await asyncio.sleep(fault.seconds)
        return response
    if fault.kind == "drop":
        return call.send(Rendered(StreamingResponse(_half_then_drop(), media_type="application/json"), None, None))
    if fault.kind == "noid":
        return call.send_json(noid_body)
    status = int(fault.kind)  # 502 or 504: a gateway gave up while the backend went on
    title = "Bad Gateway" if status == 502 else "Gateway Timeout"
    return call.send(Rendered(HTMLResponse(f"<html><body>{status} {title}</body></html>", status), None, None))
