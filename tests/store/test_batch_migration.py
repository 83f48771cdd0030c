"""Migration 0004 (batches) on a database holding jobs: every existing batch gets its row, the models and
the migrated schema agree (``alembic check``), and it downgrades. SQLite, and PostgreSQL with TEST_DATABASE_URL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from config.settings import normalize_database_url
from imagegen.store.db import alembic_config, current_revision, make_engine

NOW = datetime(2027, 2, 1, 12, 0, tzinfo=UTC)
_COUNTERS = (
    "submit_attempts",
    "polls",
    "rate_limited_submits",
    "unavailable_submits",
    "poll_errors",
    "notify_attempts",
)


def _insert(conn: sa.Connection, job_id: str, batch_id: str | None, tenant: str, minutes: int) -> None:
    values = {
        "id": job_id,
        "batch_id": batch_id,
        "provider": "apidot",
        "model": "gpt-image-2",
        "request": '{"prompt": "p"}',
        "priority": "batch",
        "status": "succeeded",
        "tenant": tenant,
        "created_at": NOW + timedelta(minutes=minutes),
        "updated_at": NOW,
        "deadline_at": NOW + timedelta(hours=1),
        "rate_reserved": False,
        **dict.fromkeys(_COUNTERS, 0),
    }
    columns = ", ".join(values)
    conn.execute(sa.text(f"INSERT INTO jobs ({columns}) VALUES ({', '.join(':' + c for c in values)})"), values)


def _id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def test_0004_gives_every_existing_batch_a_row_and_matches_the_models(database_factory: Callable[[], str]) -> None:
    url = database_factory()
    cfg = alembic_config(normalize_database_url(url))
    command.upgrade(cfg, "0003")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _insert(conn, _id(1), _id(100), "t1", 2)
            _insert(conn, _id(2), _id(100), "t1", 1)
            _insert(conn, _id(3), None, "t1", 0)
            conn.execute(
                sa.text("INSERT INTO deliveries (job_id, attempt, duration_ms, created_at) VALUES (:j, 1, 5, :at)"),
                {"j": _id(1), "at": NOW},
            )
        command.upgrade(cfg, "head")
        assert current_revision(engine) == "0004"
        command.check(cfg)  # raises if the models and the migrated schema differ
        with engine.begin() as conn:
            rows = conn.execute(sa.text("SELECT id, tenant, callback_url, notify_status, created_at FROM batches"))
            ((batch_id, tenant, callback, status, created),) = rows.all()
            flags = conn.execute(sa.text("SELECT DISTINCT batch_callback FROM jobs")).scalars().all()
        assert (batch_id, tenant, callback, status) == (_id(100), "t1", None, None)
        assert "12:01" in str(created), "the batch was created with its first job"
        assert [bool(f) for f in flags] == [False]
        indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(engine).get_indexes("jobs")}
        assert indexes["ix_jobs_batch_callback_status"] == ["batch_id", "status"]
        with engine.begin() as conn:  # a batch's delivery has no job
            conn.execute(
                sa.text("INSERT INTO deliveries (batch_id, attempt, duration_ms, created_at) VALUES (:b, 1, 5, :at)"),
                {"b": _id(100), "at": NOW},
            )

        command.downgrade(cfg, "0003")
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT job_id FROM deliveries")).scalars().all() == [_id(1)]
        assert "batches" not in sa.inspect(engine).get_table_names()
        command.upgrade(cfg, "head")
        command.check(cfg)
    finally:
        engine.dispose()
