"""Bare Celery for the throughput baseline: the same broker settings, one DB write per message, nothing else.

``celery -A bench.baseline_app worker`` consumes ``bench.touch(job_id)``; each run updates one row of
the same ``jobs`` table our pipeline uses (the minimum any durable job queue must do).
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from celery import Celery

from config.celery import celery_config
from config.settings import get_settings
from imagegen.store.db import make_engine

settings = get_settings()
app = Celery("bench-baseline")
app.conf.update({k: v for k, v in celery_config(settings).items() if k != "beat_schedule"})
_engine: tuple[int, sa.Engine] | None = None


def engine() -> sa.Engine:
    """One engine per forked child."""
    global _engine
    if _engine is None or _engine[0] != os.getpid():
        _engine = (os.getpid(), make_engine(settings.effective_database_url))
    return _engine[1]


@app.task(name="bench.touch", ignore_result=True)
def touch(job_id: str, step: int) -> None:
    """One DB write; the first step publishes the second (like submit → poll)."""
    with engine().begin() as conn:
        conn.execute(
            sa.text("UPDATE jobs SET polls = polls + 1, updated_at = updated_at WHERE id = :id"), {"id": job_id}
        )
    if step == 0:
        touch.apply_async((job_id, 1), queue="poll")
