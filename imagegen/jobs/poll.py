"""Polling an upstream task: one status call, then finalize, fail, hold, or schedule the next poll.

A poll never resubmits: whatever a status call returns, the job stays bound to its upstream task. Once
the task has finished, its file URLs are kept with the job, and polls only hand the download on to a
finalize message (``imagegen.finalize``) until it is done: no further status calls.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from imagegen.constants import POLL_TASK, clip
from imagegen.errors import ErrorKind, ProviderError
from imagegen.jobs import finalize, pauses
from imagegen.jobs.attempts import log_call
from imagegen.jobs.downloads import has_pending
from imagegen.jobs.endings import expire_if_due, fail_or_hold, follow_up
from imagegen.jobs.expected import expected_for, learn_from
from imagegen.messages import Step, finalize_step, poll_step
from imagegen.metrics import POLLS_PER_JOB, observe_unknown_job
from imagegen.providers import Phase, UpstreamState
from imagegen.providers.http import is_safety_message
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import JOBS, Job
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition, update_in
from imagegen.timing.backoff import retry_delay
from imagegen.timing.polls import next_poll_delay, poll_cap, uses_progress, webhook_factor
from imagegen.timing.timers import EARLY_SLACK, schedule

log = logging.getLogger(__name__)

#: While a poll is in progress its timer points this far ahead, so a duplicate message finds it not due.
POLL_LEASE = timedelta(seconds=60)


def poll_job(rt: Runtime, job_id: str, *, force: bool = False) -> list[Step]:
    """Serve one ``imagegen.poll`` message (``force``: a webhook said the task changed, poll now)."""
    job, step = _poll(rt, job_id, force=force)
    return ([step] if step else []) + follow_up(rt, job, step)


def _poll(rt: Runtime, job_id: str, *, force: bool) -> tuple[Job | None, Step | None]:
    """The job as read (None if the message is stale) and the next message."""
    now = rt.now()
    with rt.session() as s:
        job = repo.get_job(s, job_id)
        if job is None:
            observe_unknown_job(POLL_TASK, job_id)
        if job is None or job.status != S.RUNNING or not job.upstream_task_id:
            return None, None
        if expire_if_due(s, job, now):
            return job, None
        if has_pending(job.result):
            # Finished upstream already; only the download is left (its backoff holds, webhook or not).
            due = sa.or_(JOBS.c.next_attempt_at.is_(None), JOBS.c.next_attempt_at <= now + EARLY_SLACK)
            won = finalize.claim(rt, s, job_id, where=[due])
            return job, finalize_step(job_id) if won else None
        where = [] if force else [JOBS.c.next_attempt_at <= now + EARLY_SLACK]
        claimed = update_in(
            s,
            job_id,
            status=S.RUNNING,
            where=where,
            next_attempt_at=now + POLL_LEASE,
            dispatch_until=now + POLL_LEASE,
            polls=JOBS.c.polls + 1,
        )
        if not claimed:
            return job, None  # a duplicate message, or a poll already in progress
    started = time.monotonic()
    try:
        state = rt.provider(job.provider).status(job.upstream_task_id)
    except ProviderError as exc:
        with rt.session() as s:
            log_call(
                s,
                job,
                "status",
                started,
                upstream_task_id=job.upstream_task_id,
                http_status=exc.http_status,
                error_kind=exc.kind,
                message=exc.message,
            )
            return job, _poll_failed(rt, s, job, exc)
    pauses.probe_succeeded(rt, job)
    with rt.session() as s:
        log_call(s, job, "status", started, upstream_task_id=job.upstream_task_id, http_status=state.http_status)
        if state.phase is not Phase.PENDING:
            POLLS_PER_JOB.labels(job.provider).observe(job.polls + 1)
        if state.phase is Phase.SUCCEEDED:
            won = claim_finalizing(rt, s, job.id, state)
        elif state.phase is Phase.FAILED:
            kind = ErrorKind.CONTENT_REJECTED if is_safety_message(state.error_message) else ErrorKind.GENERATION_FAILED
            transition(
                s,
                job.id,
                source={S.RUNNING},
                target=S.FAILED,
                upstream_status=state.raw_status,
                progress=state.progress,
                error_kind=kind.value,
                error_message=state.error_message or "upstream task failed",
                error_http_status=state.http_status,
            )
            return job, None
        else:
            return job, _still_running(rt, s, job, state)
    if not won:
        return job, None
    learn_from(rt, job, rt.now(), exact=force)  # Redis, after the commit: never inside the write lock
    return job, finalize_step(job.id)


def _still_running(rt: Runtime, s: Session, job: Job, state: UpstreamState) -> Step | None:
    settings = rt.settings
    now = rt.now()
    expected = expected_for(rt, job)
    elapsed = (now - job.submitted_at).total_seconds() if job.submitted_at else 0.0
    delay = next_poll_delay(
        polls_while_running=max(1, job.polls + 1 - job.poll_errors),
        expected_s=expected * webhook_factor(settings, job.provider),
        elapsed_s=elapsed,
        progress=state.progress if uses_progress(settings, job.provider) else None,
        min_s=settings.polling.min_s,
        cap_s=poll_cap(settings, job.provider),
        rng=rt.rng,
    )
    timer = schedule(now, delay, settings)
    won = update_in(
        s,
        job.id,
        status=S.RUNNING,
        upstream_status=state.raw_status,
        progress=state.progress,
        poll_errors=0,
        **timer.values,
    )
    return poll_step(job.id, timer.countdown) if won and timer.countdown is not None else None


def _poll_failed(rt: Runtime, s: Session, job: Job, exc: ProviderError) -> Step | None:
    settings = rt.settings
    if not exc.retryable:
        return fail_or_hold(rt, s, job, S.RUNNING, exc.kind, exc.message, exc.http_status)
    errors = job.poll_errors + 1
    if errors >= settings.budgets.poll_errors:
        transition(
            s,
            job.id,
            source={S.RUNNING},
            target=S.FAILED,
            poll_errors=errors,
            error_kind=exc.kind,
            error_message=f"{exc.message} ({errors} failing status calls in a row)",
            error_http_status=exc.http_status,
        )
        return None
    delay = exc.retry_after if exc.retry_after is not None else retry_delay(errors, settings.backoff, rt.rng)
    timer = schedule(rt.now(), delay, settings)
    won = update_in(
        s,
        job.id,
        status=S.RUNNING,
        poll_errors=errors,
        last_error_kind=exc.kind,
        last_error_message=clip(exc.message),
        last_error_http_status=exc.http_status,
        **timer.values,
    )
    return poll_step(job.id, timer.countdown) if won and timer.countdown is not None else None


def claim_finalizing(rt: Runtime, s: Session, job_id: str, state: UpstreamState) -> bool:
    """The finalizing claim: of a poll and a webhook racing on the same finished task, one wins. The
    task's file URLs are kept with the job, so no download retry ever needs another status call."""
    return finalize.claim(
        rt, s, job_id, urls=state.file_urls, upstream_status=state.raw_status, progress=state.progress
    )


def finish(rt: Runtime, job_id: str, state: UpstreamState | None = None) -> Step | None:
    """Download the results of a job this caller claimed (``finalizing``) in this process; what an
    ``imagegen.finalize`` message does (``state`` is not needed: the claim kept the file URLs)."""
    return finalize.finalize(rt, job_id)[1]
