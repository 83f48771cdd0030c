"""Fixtures every tier may use: databases (SQLite, or PostgreSQL when TEST_DATABASE_URL is set), the
operations stack, and the markers each tier directory gives its tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from config.settings import normalize_database_url

if TYPE_CHECKING:
    from tests.support.stack import Stack

#: Tiers whose tests run database-specific SQL: marked ``db``, so ``make test`` runs them again on
#: PostgreSQL (``pytest -m db tests``). Any other test may carry ``@pytest.mark.db`` itself.
DB_TIERS = frozenset({"store", "pipeline"})
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(_TESTS) and path.relative_to(_TESTS).parts[0] in DB_TIERS:
            item.add_marker(pytest.mark.db)


def _fresh_postgres(base_url: str) -> tuple[str, str]:
    """Create an empty database next to ``base_url``; returns (url, name)."""
    import psycopg

    name = f"imagegen_test_{uuid.uuid4().hex[:10]}"
    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, _ = normalize_database_url(base_url).rpartition("/")
    return f"{head}/{name}", name


def _drop_postgres(base_url: str, name: str) -> None:
    import psycopg

    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """Make empty databases: PostgreSQL if TEST_DATABASE_URL is set, else SQLite files. Dropped at the end."""
    base = os.environ.get("TEST_DATABASE_URL")
    created: list[str] = []

    def make() -> str:
        if not base:
            path: Path = tmp_path_factory.mktemp("db") / "imagegen.db"
            return f"sqlite:///{path}"
        url, name = _fresh_postgres(base)
        created.append(name)
        return url

    yield make
    for name in created:
        _drop_postgres(base or "", name)


@pytest.fixture(scope="session")
def database_url(database_factory: Callable[[], str]) -> str:
    """The session's main database."""
    return database_factory()


@pytest.fixture(scope="session")
def ops_database_url(database_factory: Callable[[], str]) -> str:
    """A migrated database for the operations core (store tier) and the Grafana check (deploy tier)."""
    from imagegen.store.db import upgrade

    url = database_factory()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def ops_stack(database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, the simulator, a prefork worker and beat of their own, with ``MARKER_API_KEY`` as the API key:
    for the operator CLI (pipeline tier) and Flower (deploy tier). A database of its own, so the pipeline
    tests' workers and reconcilers never see these jobs, and these tests never see theirs."""
    from tests.support.stack import MARKER_API_KEY, stack_of_its_own

    with stack_of_its_own(database_factory(), tmp_path_factory, APIDOT_API_KEY=MARKER_API_KEY) as stack:
        yield stack
