"""Shared fixtures: a database per test session (SQLite, or PostgreSQL when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import normalize_database_url


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
