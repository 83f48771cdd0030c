"""Every upstream call is timed, counted in metrics, and written to the job's attempt log."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from imagegen.metrics import observe_call
from imagegen.store import repo
from imagegen.store.models import Job


def log_call(
    s: Session,
    job: Job,
    endpoint: str,
    started: float,
    *,
    http_status: int | None,
    error_kind: str | None = None,
    message: str | None = None,
    upstream_task_id: str | None = None,
) -> None:
    """Record one ``submit`` or ``status`` call made for ``job`` that began at ``started`` (monotonic)."""
    seconds = time.monotonic() - started
    observe_call(job.provider, endpoint, seconds, http_status, error_kind)
    repo.record_attempt(
        s,
        job_id=job.id,
        provider=job.provider,
        kind=endpoint,
        duration_ms=int(seconds * 1000),
        http_status=http_status,
        error_kind=error_kind,
        message=message,
        upstream_task_id=upstream_task_id,
    )
