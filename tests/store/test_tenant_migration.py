"""Migration 0003 (tenants) on a database holding jobs: rows become tenant ``default``, keys unique per tenant.

Runs on SQLite, and on PostgreSQL with TEST_DATABASE_URL (the store tier is marked ``db``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from config.settings import normalize_database_url
from imagegen.store.db import alembic_config, current_revision, make_engine

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


#: The NOT NULL columns of revision 0001 without a server default.
_COUNTERS = (
    "submit_attempts",
    "polls",
    "rate_limited_submits",
    "unavailable_submits",
    "poll_errors",
    "notify_attempts",
)


def _insert(conn: sa.Connection, job_id: str, key: str | None, tenant: str | None = None) -> None:
    values = {
        "id": job_id,
        "provider": "apidot",
        "model": "gpt-image-2",
        "request": '{"prompt": "p"}',
        "idempotency_key": key,
        "priority": "interactive",
        "status": "queued",
        "created_at": NOW,
        "updated_at": NOW,
        "deadline_at": NOW + timedelta(hours=1),
        "rate_reserved": False,
        **dict.fromkeys(_COUNTERS, 0),
    }
    if tenant is not None:
        values["tenant"] = tenant
    columns = ", ".join(values)
    conn.execute(sa.text(f"INSERT INTO jobs ({columns}) VALUES ({', '.join(':' + c for c in values)})"), values)


def _job(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def test_0003_gives_old_rows_the_default_tenant_and_scopes_keys(database_factory: Callable[[], str]) -> None:
    url = database_factory()
    cfg = alembic_config(normalize_database_url(url))
    command.upgrade(cfg, "0002")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _insert(conn, _job(1), "k1")
            _insert(conn, _job(2), None)
        command.upgrade(cfg, "0003")
        assert current_revision(engine) == "0003"
        with engine.begin() as conn:
            rows = conn.execute(sa.text("SELECT id, tenant FROM jobs ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(_job(1), "default"), (_job(2), "default")]
        indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(engine).get_indexes("jobs")}
        assert indexes["ix_jobs_tenant_created_at"] == ["tenant", "created_at", "id"]

        # One key per tenant: another tenant may use it, the same tenant may not (and NULL keys never clash).
        with engine.begin() as conn:
            _insert(conn, _job(3), "k1", tenant="b")
            _insert(conn, _job(4), None, tenant="b")
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert(conn, _job(5), "k1", tenant="b")
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert(conn, _job(6), "k1")  # the server default puts it in tenant default, next to job 1

        # Downgrading refuses nothing once the shared key is gone, and restores the global uniqueness.
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM jobs WHERE id = :id"), {"id": _job(3)})
        command.downgrade(cfg, "0002")
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert(conn, _job(7), "k1")
        command.upgrade(cfg, "head")  # and up again, from the constraint the downgrade named
        with engine.begin() as conn:
            _insert(conn, _job(8), "k1", tenant="c")
    finally:
        engine.dispose()
