"""The real pipeline as processes (Redis, the simulator, a prefork worker, beat, optionally the API), and
the handle tests drive it through. Fixtures in the tiers' conftest.py files start and stop these."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import Settings
from imagegen import devstack
from imagegen.jobs import pauses
from imagegen.producer import create_job, publish_submits
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import TERMINAL, JobStatus
from tests.support.tenancy import ADMIN_TOKEN, TENANT_TOKENS
from worker.app import create_app
from worker.publisher import CeleryPublisher

SETTLED = {s.value for s in TERMINAL} | {JobStatus.HELD.value}

#: Fast timings so every scenario finishes in seconds; the logic is the production logic.
PIPELINE_ENV = {
    "APIDOT_API_KEY": "sk-test-key",
    "OPENAI_API_KEY": "sk-test-openai",
    "IMAGE2_API_KEY": "sk-test-image2",
    "IMAGEGEN_ALLOW_PRIVATE_URLS": "true",
    "IMAGEGEN_EXPECTED_DURATION_S": "0.3",
    "IMAGEGEN_POLL_MIN_S": "0.3",
    "IMAGEGEN_POLL_CAP_S": "1",
    "IMAGEGEN_BACKOFF_BASE_S": "0.1",
    "IMAGEGEN_BACKOFF_CAP_S": "0.5",
    "IMAGEGEN_RECONCILE_INTERVAL_S": "1",
    "IMAGEGEN_HTTP_READ_TIMEOUT_S": "2",
    "IMAGEGEN_SUBMIT_READ_TIMEOUT_S": "2",
    "IMAGEGEN_SUBMIT_LEASE_S": "65",  # above the task time limits it guards (Settings enforce it)
    "IMAGEGEN_DISPATCH_GRACE_S": "15",
    "SIM_DURATION_S": "0.5",
    "IMAGEGEN_SOFT_SHUTDOWN_S": "1",
}


class Stack:
    """Handles on the running pipeline, plus helpers that talk to it the way a service would."""

    def __init__(self, env: dict[str, str], sim_url: str, log_dir: Path) -> None:
        self.env = env
        self.sim_url = sim_url
        self.log_dir = log_dir
        self.settings = Settings(
            redis_url=env["REDIS_URL"],
            database_url=env["DATABASE_URL"],
            apidot_base_url=sim_url,
            apidot_api_key=env["APIDOT_API_KEY"],
            imagegen_allow_private_urls=env.get("IMAGEGEN_ALLOW_PRIVATE_URLS") == "true",
            imagegen_home=env["IMAGEGEN_HOME"],
        )
        self.rt = Runtime.create(self.settings)
        self.publisher = CeleryPublisher(create_app(self.settings, name="tests"))
        self.processes: list[devstack.Process] = []
        self.worker: devstack.Process | None = None
        self.api_url: str | None = None

    # --- jobs -------------------------------------------------------------------------------------
    @staticmethod
    def prompt(text: str) -> str:
        """``text`` made unique, so the simulator's record and fault counters are per test."""
        return f"{text} #{uuid.uuid4().hex[:12]}"

    def submit(self, prompt: str, **fields: Any) -> str:
        """Queue one request through the producer API; returns the job id."""
        request = ImageRequest.from_dict({"prompt": prompt, **fields}, allow_private_urls=True)
        job, created = create_job(self.rt, request)
        if created:
            publish_submits(self.publisher, [job])
        return job.id

    def job(self, job_id: str) -> Job:
        """The job row as it is now."""
        with self.rt.session() as s:
            job = repo.get_job(s, job_id)
        assert job is not None
        return job

    def wait(self, job_id: str, timeout: float = 30, statuses: set[str] | None = None) -> Job:
        """Wait until the job is terminal or held (or in ``statuses``)."""
        targets = statuses or SETTLED
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.status in targets:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job.status} after {timeout}s (logs: {self.log_dir})")
            time.sleep(0.1)

    # --- the simulator's record -----------------------------------------------------------------
    def records(self, prompt: str, endpoint: str | None = None) -> list[dict[str, Any]]:
        """What the simulator received for this prompt (submits and polls)."""
        rows = httpx.get(f"{self.sim_url}/_sim/requests", params={"prompt_contains": prompt}, timeout=5).json()
        return [r for r in rows if endpoint is None or r["endpoint"] == endpoint]

    def submits(self, prompt: str) -> int:
        """How many submit calls the upstream saw for this prompt."""
        return len(self.records(prompt, "submit"))

    def polls(self, prompt: str) -> int:
        """How many status calls the upstream saw for this prompt."""
        return len(self.records(prompt, "status"))

    def resume(self, provider: str = "apidot") -> None:
        """``imagegen resume`` through the core."""
        pauses.resume(self.rt, provider)

    def close(self) -> None:
        """Stop every process and release the runtime."""
        devstack.stop_all(list(reversed(self.processes)), timeout=8)
        self.rt.close()


def start_stack(
    redis_url: str,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    with_api: bool = False,
    **overrides: str,
) -> Stack:
    """Simulator + ``celery -A worker worker -P prefork -c 2`` + beat on this Redis and database."""
    log_dir = tmp_path_factory.mktemp("logs")
    env = {
        **os.environ,
        **PIPELINE_ENV,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "IMAGEGEN_HOME": str(tmp_path_factory.mktemp("home")),
        **overrides,
    }
    if "IMAGEGEN_SUBMIT_POLICY" not in overrides:
        env.pop("IMAGEGEN_SUBMIT_POLICY", None)
    services = devstack.start_services(env, log_dir=log_dir, concurrency=2, api=with_api)
    stack = Stack(services.env, services.sim_url, log_dir)
    stack.processes += services.processes
    stack.worker = services.workers[0]
    stack.api_url = services.api_url
    # Ready when a job goes all the way through.
    try:
        probe = stack.submit(stack.prompt("warm-up [[instant]]"))
        stack.wait(probe, timeout=60)
    except BaseException:
        stack.close()  # a stack that never got ready stops, rather than outliving the test run
        raise
    return stack


#: ``make(**env)`` → (stack, its Redis process, its Redis URL): the system tier's ``private_stack``.
StackFactory = Callable[..., tuple[Stack, devstack.Process, str]]

#: The API key of the operations stack: searched for in everything Flower shows (it must never appear).
MARKER_API_KEY = f"sk-ops-marker-{uuid.uuid4().hex}"


@contextmanager
def stack_of_its_own(database_url: str, tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Iterator[Stack]:
    """A stack with a Redis of its own (``options`` as for ``start_stack``); everything stopped on exit."""
    redis_proc, redis_url = devstack.start_redis()
    try:
        stack = start_stack(redis_url, database_url, tmp_path_factory, **options)
    except BaseException:
        redis_proc.stop()
        raise
    try:
        yield stack
    finally:
        stack.close()
        redis_proc.stop()


@contextmanager
def tenant_api_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[Stack]:
    """``stack_of_its_own`` with a real ``imagegen api`` whose tokens are tenants a and b and an admin
    (``tests.support.tenancy``), and an upload-signing secret; ``env`` adds or overrides settings."""
    tokens = {
        "IMAGEGEN_API_TOKENS": TENANT_TOKENS,
        "IMAGEGEN_ADMIN_TOKENS": ADMIN_TOKEN,
        "IMAGEGEN_CALLBACK_TOKEN_SECRET": "upload-signing-secret",  # apidot edits fetch uploads by signed URL
    }
    with stack_of_its_own(database_url, tmp_path_factory, with_api=True, **{**tokens, **env}) as stack:
        yield stack


def revive_worker(stack: Stack) -> None:
    """Start a new worker if the stack's one died (a test that killed it fails alone, not the next ones)."""
    worker = stack.worker
    assert worker is not None
    if not worker.alive():
        stack.processes.remove(worker)
        stack.worker = devstack.start_worker(stack.env, log_dir=stack.log_dir, name="worker")
        stack.processes.append(stack.worker)
