"""The job JSON, one shape for the CLI's ``--json`` and the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus

#: Statuses that show ``error`` (why it ended or is held); others show the latest retryable error as ``last_error``.
_ERROR_STATUSES = {JobStatus.HELD, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELED}


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with an explicit offset."""
    return value.isoformat() if value else None


def job_to_dict(job: Job) -> dict[str, Any]:
    """Everything a caller may see about a job (no secrets exist in a job row)."""
    error = None
    if job.status in _ERROR_STATUSES and job.error_kind:
        error = {"kind": job.error_kind, "message": job.error_message, "http_status": job.error_http_status}
    last_error = None
    if job.status not in _ERROR_STATUSES and job.status != JobStatus.SUCCEEDED and job.last_error_kind:
        last_error = {
            "kind": job.last_error_kind,
            "message": job.last_error_message,
            "http_status": job.last_error_http_status,
        }
    return {
        "id": job.id,
        "batch_id": job.batch_id,
        "tenant": job.tenant,
        "status": job.status,
        "provider": job.provider,
        "model": job.model,
        "priority": job.priority,
        "request": job.request,
        "metadata": job.job_metadata,
        "idempotency_key": job.idempotency_key,
        "upstream_task_id": job.upstream_task_id,
        "upstream_status": job.upstream_status,
        "progress": job.progress,
        "result": [{"url": r.get("url"), "path": r.get("path")} for r in (job.result or [])],
        "error": error,
        "last_error": last_error,
        "submit_attempts": job.submit_attempts,
        "polls": job.polls,
        "created_at": iso(job.created_at),
        "submitted_at": iso(job.submitted_at),
        "finished_at": iso(job.finished_at),
        "deadline_at": iso(job.deadline_at),
        "next_attempt_at": iso(job.next_attempt_at),
    }
