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


def image_href(job_id: str, index: int, public_url: str | None = None) -> str:
    """The download URL of a job's ``index``-th result (0-based, its place in ``result``): absolute
    under ``public_url`` (``IMAGEGEN_PUBLIC_URL``) when one is given, else a path on the API."""
    path = f"/v1/jobs/{job_id}/images/{index}"
    return f"{public_url.rstrip('/')}{path}" if public_url else path


def result_entries(job_id: str, result: Any, public_url: str | None = None) -> list[dict[str, Any]]:
    """The ``result`` list as shown: each stored copy's description and ``href``; nulls until stored."""
    entries: list[dict[str, Any]] = []
    for index, raw in enumerate(result if isinstance(result, list) else []):
        r = raw if isinstance(raw, dict) else {}
        stored = isinstance(r.get("path"), str)
        entries.append(
            {
                "url": r.get("url"),
                "path": r.get("path"),
                "sha256": r.get("sha256"),
                "bytes": r.get("size"),  # the row's StoredFile calls it size
                "content_type": r.get("content_type"),
                "width": r.get("width"),
                "height": r.get("height"),
                "href": image_href(job_id, index, public_url) if stored else None,
            }
        )
    return entries


def job_to_dict(job: Job, *, public_url: str | None = None, queue_position: int | None = None) -> dict[str, Any]:
    """Everything a caller may see about a job (no secrets exist in a job row); result ``href``s are
    absolute under ``public_url``. ``queue_position`` is ``repo.queue_position``, read by single-job views
    only (a list would pay one count per queued job)."""
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
        "result": result_entries(job.id, job.result, public_url),
        "error": error,
        "last_error": last_error,
        "submit_attempts": job.submit_attempts,
        "polls": job.polls,
        "created_at": iso(job.created_at),
        "submitted_at": iso(job.submitted_at),
        "finished_at": iso(job.finished_at),
        "deadline_at": iso(job.deadline_at),
        "next_attempt_at": iso(job.next_attempt_at),
        "queue_position": queue_position,
    }
