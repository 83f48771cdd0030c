"""Engines, sessions and schema upgrades for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session, sessionmaker

from imagegen.errors import ImagegenError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SchemaBehind(ImagegenError):
    """The database schema is older than this code (run ``imagegen db upgrade``)."""


#: Execution option marking a read-only transaction (``read_scope``): on SQLite it begins DEFERRED.
READ_ONLY = "imagegen_read_only"


def make_engine(url: str, *, pool_size: int = 5) -> sa.Engine:
    """Create an engine; on SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions
    (read-only ones, see ``read_scope``, begin DEFERRED and never wait for the write lock)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit BEGIN is DEFERRED, which
    # turns concurrent read-then-write transactions into SQLITE_BUSY failures instead of waits).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(connection: sa.Connection) -> None:
    # A WAL reader sees the last committed snapshot without taking the write lock, so status, list and
    # metrics reads never queue behind the reconciler's or a worker's write transaction.
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (jobs are read, then rendered)."""
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    """Sessions for reads only (DEFERRED on SQLite). Writing in one is a bug: on SQLite such a write can
    fail with SQLITE_BUSY where a ``BEGIN IMMEDIATE`` transaction would have waited for the lock."""
    return make_sessionmaker(engine.execution_options(**{READ_ONLY: True}))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


# --- migrations -------------------------------------------------------------------------------------


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(url: str) -> str | None:
    """The newest migration shipped with this code."""
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (``imagegen db upgrade``)."""
    with _migration_lock(url):
        command.upgrade(alembic_config(url), "head")


def ensure_schema(engine: sa.Engine) -> None:
    """SQLite: upgrade in place. PostgreSQL: refuse to run on an old schema (compose migrates once)."""
    url = engine.url.render_as_string(hide_password=False)
    head = head_revision(url)
    if current_revision(engine) == head:
        return
    if engine.dialect.name == "sqlite":
        upgrade(url)
        return
    raise SchemaBehind(
        f"the database schema is at {current_revision(engine)!r}, this code needs {head!r}: run `imagegen db upgrade`"
    )


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    # Several processes (worker children, beat, the CLI) may start at once on a fresh SQLite file;
    # a file lock makes the first one migrate and the others wait and find the schema current.
    if not url.startswith("sqlite"):
        yield
        return
    path = Path(url.split("///", 1)[-1] + ".migrate.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
