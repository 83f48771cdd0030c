"""The real pipeline for tests: a private Redis, the simulator, a prefork worker and beat, as processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagegen import devstack
from imagegen.ops import actions as admin
from imagegen.store import repo
from tests.support.stack import Stack, start_stack


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private Redis on a free port (never the machine's shared one)."""
    proc, url = devstack.start_redis()
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def stack(redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shared pipeline for the pipeline tests."""
    running = start_stack(redis_url, database_url, tmp_path_factory)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def resume_after(stack: Stack) -> Iterator[None]:
    """Tests that pause the provider leave it unpaused, with no held job left to pause it again."""
    yield
    with stack.rt.session() as s:
        held = [j.id for j in repo.list_jobs(s, status="held", limit=10_000)]
    for job_id in held:
        admin.cancel(stack.rt, job_id)
    for provider in ("apidot", "openai", "image2"):
        stack.resume(provider)
