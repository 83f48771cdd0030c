"""Engines, sessions and schema upgrades for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import ast
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from imagegen.errors import DatabaseUnusable, SchemaBehind

if TYPE_CHECKING:
    from alembic.config import Config

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
# Alembic is imported by the functions that read or run migrations, not by this module: a process whose
# schema is current (every start after the first) never needs it (``ensure_schema``'s fast path).


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(url: str) -> str | None:
    """The newest migration shipped with this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (``imagegen db upgrade``)."""
    from alembic import command

    with _migration_lock(url):
        command.upgrade(alembic_config(url), "head")


def ensure_schema(engine: sa.Engine) -> None:
    """SQLite: upgrade in place. PostgreSQL: refuse to run on an old schema (compose migrates once)."""
    if schema_is_current(engine):
        return
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


def schema_is_current(engine: sa.Engine) -> bool:
    """True when the database is, for certain, at the newest shipped migration; checked with one plain
    query and the migration files' ``revision``/``down_revision`` lines, so without importing Alembic
    and the migrations (a few hundred milliseconds of every CLI command's start).

    False means "ask Alembic" (``ensure_schema`` does): an empty or older database, several heads, or
    migration files this simple reading does not understand.
    """
    head = shipped_head()
    if head is None:
        return False
    with engine.execution_options(**{READ_ONLY: True}).connect() as conn:
        try:
            recorded = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        except sa.exc.DBAPIError:  # no version table yet: a new database
            return False
    return recorded == [head]


def shipped_head() -> str | None:
    """The newest migration in ``migrations/versions``, read from each file's module-level ``revision``
    and ``down_revision`` literals (the files Alembic loads).

    None unless every file states both as plain strings (or None) and exactly one revision is nobody's
    parent.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        if path.name.startswith(("__init__", ".#")):  # what Alembic skips too
            continue
        values = _literals(path, ("revision", "down_revision"))
        revision, down = values.get("revision"), values.get("down_revision", ...)
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None  # computed, missing, or a merge (several parents): Alembic answers
        revisions.add(revision)
        if down is not None:
            parents.add(down)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _literals(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The module-level ``name = <literal>`` (or ``name: T = <literal>``) assignments of ``path``."""
    found: dict[str, Any] = {}
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return found
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                found[target.id] = ...  # not a literal: unknown
    return found


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
