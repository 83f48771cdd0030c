"""Operator actions: cancel, retry, resume. Each is a lifecycle CAS; each returns messages to publish."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from imagegen.errors import ErrorKind, JobNotFound, UnknownProvider
from imagegen.lifecycle import ACTIVE, RETRYABLE_FROM, transition, transition_many
from imagegen.lifecycle import JobStatus as S
from imagegen.runtime import Runtime
from imagegen.steps import Step, submit_step
from imagegen.store import repo
from imagegen.store.models import Job


@dataclass(frozen=True)
class ActionResult:
    """Whether the action happened, why not if it did not, and what to publish."""

    ok: bool
    reason: str = ""
    steps: tuple[Step, ...] = ()


def cancel(rt: Runtime, job_id: str) -> ActionResult:
    """Cancel a job that has not ended. In-flight messages find it canceled and do nothing."""
    with rt.session() as s:
        job = repo.get_job(s, job_id)
        if job is None:
            raise JobNotFound(job_id)
        if transition(
            s,
            job_id,
            source=ACTIVE,
            target=S.CANCELED,
            error_kind=ErrorKind.CANCELED.value,
            error_message="canceled by request",
            error_http_status=None,
            submit_inflight_at=None,
        ):
            return ActionResult(True)
    return ActionResult(False, f"job {job_id} is {job.status}; only a job that has not ended can be canceled")


def retry(rt: Runtime, job_id: str) -> ActionResult:
    """Queue a failed, expired or canceled job again: a new submit with fresh budgets and deadline."""
    now = rt.now()
    with rt.session() as s:
        job = repo.get_job(s, job_id)
        if job is None:
            raise JobNotFound(job_id)
        deadline_s = job.request.get("deadline_s") or rt.settings.imagegen_default_deadline_s
        # The old upstream task id stays in the attempt log; the row forgets it for the new submit.
        won = transition(
            s,
            job_id,
            source=RETRYABLE_FROM,
            target=S.QUEUED,
            upstream_task_id=None,
            upstream_status=None,
            progress=None,
            result=None,
            error_kind=None,
            error_message=None,
            error_http_status=None,
            last_error_kind=None,
            last_error_message=None,
            last_error_http_status=None,
            rate_limited_submits=0,
            unavailable_submits=0,
            poll_errors=0,
            finished_at=None,
            submitted_at=None,
            deadline_at=now + timedelta(seconds=float(deadline_s)),
            next_attempt_at=now,
            dispatch_until=now + timedelta(seconds=rt.settings.imagegen_dispatch_grace_s),
        )
    if won:
        return ActionResult(True, steps=(submit_step(job_id, job.priority),))
    return ActionResult(False, f"job {job_id} is {job.status}; only failed, expired or canceled jobs can be retried")


def resume(rt: Runtime, provider: str) -> ActionResult:
    """Unpause a provider key and return its held jobs to work (queued, or running if already submitted)."""
    now = rt.now()
    with rt.session() as s:
        if repo.get_provider_state(s, provider) is None:
            raise UnknownProvider(provider)
        was_paused = repo.unpause_provider(s, provider=provider)
        back: dict[str, Any] = {
            "next_attempt_at": now,
            "dispatch_until": None,
            "error_kind": None,
            "error_message": None,
        }
        mine = col(Job.provider) == provider
        requeued = transition_many(
            s,
            source={S.HELD},
            target=S.QUEUED,
            where=[mine, col(Job.upstream_task_id).is_(None)],
            **back,
            rate_limited_submits=0,
            unavailable_submits=0,
        )
        repolled = transition_many(
            s,
            source={S.HELD},
            target=S.RUNNING,
            where=[mine, col(Job.upstream_task_id).is_not(None)],
            **back,
            poll_errors=0,
        )
        # Queued jobs parked while paused are due already; the reconciler releases them on its next run.
        parked = s.execute(sa.select(sa.func.count()).where(mine, col(Job.status) == S.QUEUED.value)).scalar_one()
    state = "unpaused" if was_paused else "was not paused"
    return ActionResult(
        True,
        f"{provider} {state}; {len(requeued)} held jobs requeued, {len(repolled)} polling again, "
        f"{parked} queued jobs will be released by the reconciler",
    )
