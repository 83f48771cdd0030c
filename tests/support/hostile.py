"""Hostile messages against a real worker: a genuine kombu envelope to tamper with, raw pushes past every
producer, and the checks that the worker's main process is still the same one and still serving."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from imagegen.store import repo
from imagegen.store.models import Job
from tests.support.stack import Stack


def wait_row(stack: Stack, job_id: str, timeout: float = 20) -> Job | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with stack.rt.session() as s:
            job = repo.get_job(s, job_id)
        if job is not None:
            return job
        time.sleep(0.2)
    return None


def worker_log(stack: Stack) -> str:
    return (stack.log_dir / "worker.log").read_text(errors="replace")


def kombu_envelope(stack: Stack, task: str) -> dict[str, Any]:
    """A real kombu envelope for ``task`` (sent to a queue nobody consumes, then taken back)."""
    import redis

    queue = f"poison-template-{uuid.uuid4().hex[:8]}"
    stack.publisher._app.send_task(task, args=[str(uuid.uuid4())], queue=queue)
    raw = redis.Redis.from_url(stack.env["REDIS_URL"]).rpop(queue)
    assert raw is not None
    envelope: dict[str, Any] = json.loads(raw)
    envelope["properties"]["delivery_info"]["routing_key"] = "celery"
    return envelope


def push_raw(stack: Stack, payload: bytes | str) -> None:
    import redis

    redis.Redis.from_url(stack.env["REDIS_URL"]).lpush("celery", payload)


def still_serving(stack: Stack, main_pid: int) -> None:
    assert stack.worker is not None
    ok = stack.wait(stack.submit(stack.prompt("after the poison [[instant]]")), timeout=60)
    assert ok.status == "succeeded", ok.error_message
    assert stack.worker.alive(), f"the worker died (logs: {stack.log_dir})"
    assert stack.worker.pid == main_pid
