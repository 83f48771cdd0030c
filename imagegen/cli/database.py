"""The database from the CLI: ``imagegen db upgrade``, and ``Database``, the database-only handle of the
commands that only look jobs up (``status``, ``jobs``).

A ``Runtime`` also builds the HTTP client, the provider clients and the result store, and importing it
loads their stacks (httpx transports, Redis, Pillow); looking a job up needs none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import click
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from config.settings import get_settings
from imagegen.cli.output import SOME_FAILED, fail
from imagegen.errors import ImagegenError
from imagegen.store.db import (
    ensure_schema,
    make_engine,
    make_read_sessionmaker,
    make_sessionmaker,
    prepare_sqlite_directory,
    session_scope,
    upgrade,
)
from imagegen.store.models import utcnow


@dataclass
class Database:
    """The configured database: the part of a ``Runtime`` that reading jobs uses, with the same methods."""

    engine: sa.Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One database transaction."""
        with session_scope(self.sessions) as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """One read-only transaction (on SQLite it never waits for the write lock)."""
        with session_scope(self.read_sessions) as session:
            yield session

    def now(self) -> datetime:
        """The current time (UTC, aware)."""
        return utcnow()

    def close(self) -> None:
        self.engine.dispose()


def open_database() -> Database:
    """The database as ``Runtime.create`` opens it (an SQLite schema brought up to date, a PostgreSQL one
    required to be); one that cannot be used is one line on stderr, exit 1."""
    settings = get_settings()
    url = settings.effective_database_url
    try:
        prepare_sqlite_directory(url, create=settings.database_url is None)
        engine = make_engine(url)
        ensure_schema(engine)
    except ImagegenError as exc:
        fail(str(exc), SOME_FAILED)
    return Database(engine, make_sessionmaker(engine), make_read_sessionmaker(engine))


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations up to the newest schema."""
    settings = get_settings()
    try:
        prepare_sqlite_directory(settings.effective_database_url, create=settings.database_url is None)
        upgrade(settings.effective_database_url)
    except ImagegenError as exc:
        fail(str(exc))
    click.echo("database is up to date")
