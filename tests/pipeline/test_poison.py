"""Hostile messages sent by task name: none crashes a worker, and a rejected job id tells its sender why.

These run on a stack of their own (Redis, simulator, worker, beat), since a regression here kills the
worker that every other pipeline test shares.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from imagegen import devstack
from imagegen.store import repo
from imagegen.store.models import Job
from tests.pipeline.conftest import Stack, start_stack

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def own_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_proc, redis_url = devstack.start_redis()
    stack = start_stack(redis_url, database_factory(), tmp_path_factory)
    try:
        yield stack
    finally:
        stack.close()
        redis_proc.stop()


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _send_foreign(stack: Stack, task: str, *, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> None:
    """Send ``task`` by name from a plain Celery app in another process (no hooks of ours at publish)."""
    code = (
        "import json, sys; from celery import Celery; "
        "Celery(broker=sys.argv[1]).send_task(sys.argv[2], args=json.loads(sys.argv[3]), "
        "kwargs=json.loads(sys.argv[4]), queue='celery')"
    )
    argv = [sys.executable, "-c", code, stack.env["REDIS_URL"], task, json.dumps(args or []), json.dumps(kwargs or {})]
    subprocess.run(argv, check=True, timeout=30)


def _wait_row(stack: Stack, job_id: str, timeout: float = 20) -> Job | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with stack.rt.session() as s:
            job = repo.get_job(s, job_id)
        if job is not None:
            return job
        time.sleep(0.2)
    return None


def _worker_log(stack: Stack) -> str:
    return (stack.log_dir / "worker.log").read_text(errors="replace")


def test_deep_metadata_by_name_does_not_crash_the_worker(own_stack: Stack) -> None:
    stack = own_stack
    assert stack.worker is not None
    main_pid = stack.worker.pid
    job_id = str(uuid.uuid4())
    request = {"prompt": stack.prompt("poison [[instant]]"), "metadata": _nested(500)}
    _send_foreign(stack, "imagegen.enqueue", kwargs={"request": request, "job_id": job_id})
    # The next normal job on the same worker goes through, and the worker is the same process.
    ok = stack.wait(stack.submit(stack.prompt("after the poison [[instant]]")), timeout=60)
    assert ok.status == "succeeded", ok.error_message
    assert stack.worker.alive(), f"the worker died (logs: {stack.log_dir})"
    assert stack.worker.pid == main_pid
    job = _wait_row(stack, job_id)
    assert job is not None, "the rejected job id was not recorded"
    assert (job.status, job.error_kind) == ("failed", "invalid_request")
    assert "metadata: nested too deeply" in (job.error_message or "")
    assert "RecursionError" not in _worker_log(stack)
