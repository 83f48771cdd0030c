"""The live status route: ``GET /v1/jobs/{id}/events``, a Server-Sent Events stream of one job.

An event ``status`` carries the job JSON whenever something a watcher sees changed (status, progress,
upstream status, results, errors, queue position); the event ``end`` carries the final JSON, then the
stream closes. A comment line every ``HEARTBEAT_S`` keeps proxies from closing an idle stream. The
format is the WHATWG one (https://html.spec.whatwg.org/multipage/server-sent-events.html): each event has
an ``id`` (a counter), so a client that reconnects simply gets the current state first.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from imagegen.api.auth import CallerDep
from imagegen.api.feed import ChangeFeed
from imagegen.api.jobs import NOT_FOUND
from imagegen.api.state import FeedDep, RuntimeDep, SettingsDep
from imagegen.api.tenancy import own_job
from imagegen.api.waiting import REREAD_S, follow, view
from imagegen.runtime import Runtime
from imagegen.store.transitions import TERMINAL, JobStatus

router = APIRouter(prefix="/v1")

HEARTBEAT_S = 15.0
#: What makes a new ``status`` event (``next_attempt_at`` moves on every poll: not news).
WATCHED = ("status", "progress", "upstream_status", "result", "error", "last_error", "queue_position")

_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`: events `status` (the job JSON) and a final `end`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    404: NOT_FOUND,
}


def sse(event: str, data: dict[str, Any], event_id: int) -> bytes:
    """One Server-Sent Event (the JSON has no newlines, so it is one ``data`` line)."""
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get(
    "/jobs/{job_id}/events",
    summary="Follow a job as Server-Sent Events",
    responses=_STREAM,
    response_class=StreamingResponse,
)
async def job_events(
    job_id: str,
    rt: RuntimeDep,
    settings: SettingsDep,
    caller: CallerDep,
    feed: FeedDep,
) -> StreamingResponse:
    """``status`` on every change, ``end`` once the job ended; 404 for another tenant's or an unknown job."""
    await run_in_threadpool(own_job, rt, caller, job_id)
    stream = _stream(feed, rt, job_id, settings.imagegen_public_url)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx: do not buffer the stream
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _stream(feed: ChangeFeed, rt: Runtime, job_id: str, public_url: str | None) -> AsyncIterator[bytes]:
    yield b"retry: 5000\n\n"  # reconnect after 5 s, not the browser default of ~3 s
    last: tuple[Any, ...] | None = None
    last_sent = time.monotonic()
    count = 0
    last_updated: datetime | None = None
    viewed_at = -math.inf
    async for job in follow(feed, rt, job_id, tick_s=HEARTBEAT_S):
        # An unchanged row is no news (a resubscription wakes every stream at once): only a queued
        # job's position can move without its row changing, and it is counted again every REREAD_S.
        unchanged = job is not None and job.updated_at == last_updated
        if job is None or (unchanged and (job.status != JobStatus.QUEUED or time.monotonic() - viewed_at < REREAD_S)):
            if time.monotonic() - last_sent >= HEARTBEAT_S:
                yield b": heartbeat\n\n"
                last_sent = time.monotonic()
            continue
        data = await run_in_threadpool(view, rt, job, public_url)
        last_updated, viewed_at = job.updated_at, time.monotonic()
        seen = tuple(json.dumps(data[k], sort_keys=True) for k in WATCHED)
        ended = JobStatus(job.status) in TERMINAL
        if seen != last or ended:
            count += 1
            yield sse("end" if ended else "status", data, count)
            last, last_sent = seen, time.monotonic()
        elif time.monotonic() - last_sent >= HEARTBEAT_S:
            yield b": heartbeat\n\n"
            last_sent = time.monotonic()
