"""A migrated database and a Runtime for store tests (SQLite, or PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from config.settings import Settings
from imagegen.runtime import Runtime
from imagegen.store.db import upgrade


@pytest.fixture(scope="session")
def migrated_url(database_factory: Callable[[], str]) -> str:
    """A database of the store tests' own: they delete rows and recover leases, so they must never share
    one with a running pipeline stack (whose reconciler would act on their rows; xdist may run both in
    one process)."""
    url = database_factory()
    upgrade(url)
    return url


@pytest.fixture
def rt(migrated_url: str) -> Iterator[Runtime]:
    runtime = Runtime.create(Settings(database_url=migrated_url, redis_url="redis://unused:1/0"))
    with runtime.session() as s:
        s.execute(sa.text("DELETE FROM jobs"))
        s.execute(sa.text("DELETE FROM attempts"))
        s.execute(sa.text("DELETE FROM batches"))
        s.execute(sa.text("DELETE FROM deliveries"))
        s.execute(sa.text("UPDATE provider_state SET paused = false"))
    yield runtime
    runtime.close()
