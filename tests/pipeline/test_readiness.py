"""A worker without a usable database never reports ready: it exits 2 with one line naming DATABASE_URL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from imagegen import devstack
from imagegen.store.db import upgrade
from tests.support.stack import PIPELINE_ENV

pytestmark = pytest.mark.pipeline


def _newer_schema(tmp_path: Path) -> str:
    """An SQLite database migrated by a newer release than this code (a revision it does not know)."""
    url = f"sqlite:///{tmp_path}/newer.db"
    upgrade(url)
    with sqlite3.connect(tmp_path / "newer.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    return url


def _unmigrated_postgres(database_factory: Callable[[], str]) -> str:
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("needs TEST_DATABASE_URL (PostgreSQL)")
    return database_factory()  # an empty database: nobody ran `imagegen db upgrade`


@pytest.mark.parametrize("case", ["missing-directory", "unreachable", "newer-schema", "unmigrated-postgres"])
def test_worker_without_a_usable_database_exits_2(
    redis_url: str, tmp_path: Path, database_factory: Callable[[], str], case: str
) -> None:
    urls = {
        "missing-directory": lambda: f"sqlite:///{tmp_path}/no-such-dir/imagegen.db",
        "unreachable": lambda: "postgresql://imagegen:s3cret-pw@127.0.0.1:1/imagegen",
        "newer-schema": lambda: _newer_schema(tmp_path),
        "unmigrated-postgres": lambda: _unmigrated_postgres(database_factory),
    }
    url = urls[case]()
    env = {**os.environ, **PIPELINE_ENV, "REDIS_URL": redis_url, "DATABASE_URL": url, "IMAGEGEN_HOME": str(tmp_path)}
    queue = f"readiness-{uuid.uuid4().hex[:8]}"  # the session's pipeline worker shares this Redis
    client = redis.Redis.from_url(redis_url)
    client.lpush(queue, b"a message the worker must not take")
    worker = devstack.start_worker(env, concurrency=1, queues=queue, log_dir=tmp_path, name=f"worker-{case}")
    try:
        code = worker.popen.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.stop()
        pytest.fail(f"the worker kept running on an unusable database (log: {tmp_path})")
    log = (tmp_path / f"worker-{case}.log").read_text(errors="replace")
    assert code == 2, log[-2000:]
    last = log.strip().splitlines()[-1]
    assert last.startswith("imagegen worker cannot start: DATABASE_URL"), last
    assert "s3cret-pw" not in log
    assert "ready." not in log and "Traceback" not in log
    assert client.llen(queue) == 1  # nothing was consumed
    assert not (tmp_path / "no-such-dir").exists()
