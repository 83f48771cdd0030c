"""Operator actions: cancel (one job or a batch), retry. Each is a lifecycle CAS; each returns messages to publish."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col

from imagegen.errors import ErrorKind, JobNotFound
from imagegen.messages import Step, submit_step
from imagegen.metrics import observe_end
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import ACTIVE, RETRYABLE_FROM, transition, transition_many
from imagegen.store.transitions import JobStatus as S
from imagegen.webhooks import batches as batch_notices
from imagegen.webhooks import outbound as notifications


@dataclass(frozen=True)
class ActionResult:
    """Whether the action happened, why not if it did not, and what to publish."""

    ok: bool
    reason: str = ""
    steps: tuple[Step, ...] = ()


#: What a canceled job records (one job or a whole batch).
_CANCELED: dict[str, Any] = {
    "error_kind": ErrorKind.CANCELED.value,
    "error_message": "canceled by request",
    "error_http_status": None,
    "submit_inflight_at": None,
}


def cancel(rt: Runtime, job_id: str) -> ActionResult:
    """Cancel a job that has not ended. In-flight messages find it canceled and do nothing."""
    with rt.session() as s:
        job = repo.get_job(s, job_id)
        if job is None:
            raise JobNotFound(job_id)
        if transition(s, job_id, source=ACTIVE, target=S.CANCELED, **_CANCELED):
            return ActionResult(True)
    return ActionResult(False, f"job {job_id} is {job.status}; only a job that has not ended can be canceled")


@dataclass(frozen=True)
class BatchCanceled:
    """What ``cancel_batch`` did: how many jobs it canceled, and the batch's counts by status after."""

    canceled: int
    counts: dict[str, int]


def cancel_batch(rt: Runtime, batch_id: str, *, tenant: str | None = None) -> BatchCanceled | None:
    """Cancel every job of the batch (of ``tenant``'s, if given) that has not ended; None: no such jobs.

    One CAS statement: a job that ends meanwhile keeps its ending; nothing is published (in-flight
    messages find their job canceled and do nothing, as for ``cancel``).
    """
    where = [col(Job.batch_id) == batch_id]
    if tenant is not None:
        where.append(col(Job.tenant) == tenant)
    with rt.session() as s:
        if not repo.count_by_status(s, batch_id=batch_id, tenant=tenant):
            return None
        moved = transition_many(s, source=ACTIVE, target=S.CANCELED, where=where, **_CANCELED)
    for _ in moved:
        observe_end(S.CANCELED.value, ErrorKind.CANCELED.value)
    with rt.read_session() as s:
        counts = repo.count_by_status(s, batch_id=batch_id, tenant=tenant)
    return BatchCanceled(len(moved), counts)


def retry(rt: Runtime, job_id: str) -> ActionResult:
    """Queue a failed, expired or canceled job again: a new submit with fresh budgets and deadline."""
    now = rt.now()
    with rt.session() as s:
        job = repo.get_job(s, job_id)
        if job is None:
            raise JobNotFound(job_id)
        deadline_s = job.request.get("deadline_s") or rt.settings.timers.default_deadline_s
        # The old upstream task id stays in the attempt log; the row forgets it for the new submit.
        won = transition(
            s,
            job_id,
            source=RETRYABLE_FROM,
            target=S.QUEUED,
            **requeue_values(now, float(deadline_s), rt.settings.timers.dispatch_grace_s),
        )
        if won and job.batch_callback and job.batch_id:
            batch_notices.reopen(s, [job.batch_id])  # its batch's next finish is a new outcome
    if won:
        return ActionResult(True, steps=(submit_step(job_id, job.priority, job.provider),))
    return ActionResult(False, f"job {job_id} is {job.status}; only failed, expired or canceled jobs can be retried")


def requeue_values(now: datetime, deadline_s: float, dispatch_grace_s: float) -> dict[str, Any]:
    """The fields a requeued job gets (``retry``, ``operations.retry_many``): a fresh submit, budgets, deadline.

    The old upstream task id stays in the attempt log; the row forgets it for the new submit.
    """
    return {
        "upstream_task_id": None,
        "upstream_status": None,
        "progress": None,
        "result": None,
        "error_kind": None,
        "error_message": None,
        "error_http_status": None,
        "last_error_kind": None,
        "last_error_message": None,
        "last_error_http_status": None,
        "rate_limited_submits": 0,
        "unavailable_submits": 0,
        "poll_errors": 0,
        "unknown_submits": 0,
        "download_errors": 0,
        "wait_reason": None,
        "finished_at": None,
        "submitted_at": None,
        "deadline_at": now + timedelta(seconds=deadline_s),
        "next_attempt_at": now,
        "dispatch_until": now + timedelta(seconds=dispatch_grace_s),
        **notifications.RESET,  # the caller hears the new outcome (a new webhook-id)
    }
