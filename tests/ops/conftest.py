"""Fixtures for the operations tests: a migrated database of their own, and a private pipeline stack.

Both use databases of their own (never the session's shared one), so the pipeline tests' workers and
reconcilers never see these jobs, and these tests never see theirs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from config.settings import Settings
from imagegen import devstack
from imagegen.runtime import Runtime
from imagegen.store.db import upgrade
from tests.pipeline.conftest import Stack, start_stack

#: The API key of the ops stack: searched for in everything Flower shows (it must never appear).
MARKER_API_KEY = f"sk-ops-marker-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def ops_database_url(database_factory: Callable[[], str]) -> str:
    """A migrated database for the core operations tests."""
    url = database_factory()
    upgrade(url)
    return url


@pytest.fixture
def rt(ops_database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on an emptied database, with its results directory under ``tmp_path``."""
    settings = Settings(
        database_url=ops_database_url,
        redis_url="redis://127.0.0.1:1/0",
        imagegen_home=tmp_path / "home",
        imagegen_results_dir=tmp_path / "results",
    )
    runtime = Runtime.create(settings)
    with runtime.session() as s:
        for table in ("jobs", "attempts", "deliveries"):
            s.execute(sa.text(f"DELETE FROM {table}"))
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def ops_stack(database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, the simulator, a prefork worker and beat of their own, with a marker API key."""
    redis_proc, redis_url = devstack.start_redis()
    try:
        stack = start_stack(redis_url, database_factory(), tmp_path_factory, APIDOT_API_KEY=MARKER_API_KEY)
    except BaseException:
        redis_proc.stop()
        raise
    try:
        yield stack
    finally:
        stack.close()
        redis_proc.stop()
