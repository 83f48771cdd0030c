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

from imagegen.errors import DatabaseUnusable, SchemaBehind

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def prepare_sqlite_directory(url: str, *, create: bool) -> None:
    """Create the SQLite file's directory (``create``: the default under ``IMAGEGEN_HOME``), or require it.

    A ``DATABASE_URL`` naming a directory that does not exist is a typo or a missing volume: creating it
    would give this process a new, empty database that no other process uses.
    """
    path = sqlite_file(url)
    if path is None:
        return
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise DatabaseUnusable(f"DATABASE_URL: the directory {path.parent} of the SQLite file does not exist")


def check_database(url: str) -> None:
    """Connect, and bring the schema up to date (SQLite) or require it to be (PostgreSQL); then let go.

    For a process's start: ``DatabaseUnusable`` says, in one line naming ``DATABASE_URL``, why not.
    """
    try:
        engine = make_engine(url, pool_size=1)
    except DatabaseUnusable:
        raise
    except (ValueError, ImportError, sa.exc.ArgumentError) as exc:
        raise DatabaseUnusable(f"DATABASE_URL: not a usable database URL ({exc.__class__.__name__})") from None
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        ensure_schema(engine)
    except SchemaBehind as exc:
        raise DatabaseUnusable(f"DATABASE_URL ({shown}): {exc}") from None
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise DatabaseUnusable(f"DATABASE_URL ({shown}): {reason}") from None
    finally:
        engine.dispose()


#: Execution option marking a read-only transaction (``read_scope``): on SQLite it begins DEFERRED.
READ_ONLY = "imagegen_read_only"


def make_engine(url: str, *, pool_size: int = 5) -> sa.Engine:
    """Create an engine; on SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions
    (read-only ones, see ``read_scope``, begin DEFERRED and never wait for the write lock).

    An SQLite file's directory must exist (``prepare_sqlite_directory`` creates the default one).
    """
    if url.startswith("sqlite"):
        prepare_sqlite_directory(url, create=False)
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
    prepare_sqlite_directory(url, create=False)
    path = Path(url.split("///", 1)[-1] + ".migrate.lock")
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
