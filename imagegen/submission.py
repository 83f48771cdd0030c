"""Submitting a job upstream: claim with a lease, one POST, classify the outcome, schedule what follows."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy.orm import Session
from sqlmodel import col

from imagegen import notifications, pauses
from imagegen.backoff import compute_backoff
from imagegen.errors import ProviderError, RequestInvalid
from imagegen.lifecycle import JobStatus as S
from imagegen.lifecycle import transition, update_in
from imagegen.outcomes import expire_if_due, fail_or_hold
from imagegen.requests import ImageRequest
from imagegen.runtime import Runtime
from imagegen.schedule import expected_duration, first_poll_delay, webhook_factor
from imagegen.steps import Step, poll_step, submit_step
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.timers import schedule
from imagegen.webhooks import callback_url

log = logging.getLogger(__name__)

#: A message may arrive a little before its due time (clock skew between hosts).
EARLY_SLACK = timedelta(seconds=2)


def submit_job(rt: Runtime, job_id: str) -> list[Step]:
    """Serve one ``imagegen.submit`` message; returns the messages to publish next."""
    steps = [step] if (step := _submit(rt, job_id)) else []
    return steps + follow_up(rt, job_id)


def follow_up(rt: Runtime, job_id: str) -> list[Step]:
    """A job that just ended and has a caller callback gets its notification claimed right away."""
    step = notifications.claim(rt, job_id)
    return [step] if step else []


def _submit(rt: Runtime, job_id: str) -> Step | None:
    now = rt.now()
    with rt.session() as s:
        job = repo.get_job(s, job_id)
        if job is None or job.status != S.QUEUED:
            return None  # stale or duplicate message: the row says what is true
        if expire_if_due(s, job, now):
            return None
        if pauses.blocks(s, job):
            # Park without a message: the reconciler skips paused providers, resume releases them.
            update_in(s, job_id, status=S.QUEUED, dispatch_until=None)
            return None
        token = str(uuid.uuid4())
        lease_until = now + timedelta(seconds=rt.settings.imagegen_submit_lease_s)
        due = or_(col(Job.next_attempt_at).is_(None), col(Job.next_attempt_at) <= now + EARLY_SLACK)
        if not transition(
            s,
            job_id,
            source={S.QUEUED},
            target=S.SUBMITTING,
            where=[due],
            lease_token=token,
            lease_until=lease_until,
            dispatch_until=None,
        ):
            return None  # another worker claimed it, or this message is early and stale
    with rt.session() as s:
        # Committed before the POST: if we die after it, the reconciler knows a generation may be paid.
        if not update_in(
            s,
            job_id,
            status=S.SUBMITTING,
            where=[col(Job.lease_token) == token],
            submit_inflight_at=rt.now(),
            submit_attempts=col(Job.submit_attempts) + 1,
        ):
            return None
    return _call_upstream(rt, job, token)


def _call_upstream(rt: Runtime, job: Job, token: str) -> Step | None:
    provider = rt.provider(job.provider)
    started = time.monotonic()
    try:
        request = ImageRequest.from_dict(job.request, allow_private_urls=True)
        result = provider.submit(request, callback_url=callback_url(rt.settings, job.provider, job.id))
    except RequestInvalid as exc:  # only if validation rules changed since intake
        with rt.session() as s:
            return fail_or_hold(rt, s, job, S.SUBMITTING, exc.kind, str(exc), None, lease=token)
    except ProviderError as exc:
        duration = int((time.monotonic() - started) * 1000)
        with rt.session() as s:
            repo.record_attempt(
                s,
                job_id=job.id,
                provider=job.provider,
                kind="submit",
                duration_ms=duration,
                http_status=exc.http_status,
                error_kind=exc.kind,
                message=exc.message,
            )
            if exc.retryable:
                return _retry_submit(rt, s, job, token, exc)
            return fail_or_hold(rt, s, job, S.SUBMITTING, exc.kind, exc.message, exc.http_status, lease=token)
    duration = int((time.monotonic() - started) * 1000)
    now = rt.now()
    expected = expected_duration(
        rt.settings.expected_durations,
        job.provider,
        job.model,
        job.request.get("quality"),
        job.request.get("resolution"),
    )
    timer = schedule(now, first_poll_delay(expected) * webhook_factor(rt.settings), rt.settings)
    with rt.session() as s:
        repo.record_attempt(
            s,
            job_id=job.id,
            provider=job.provider,
            kind="submit",
            duration_ms=duration,
            http_status=result.http_status,
            upstream_task_id=result.task_id,
        )
        won = transition(
            s,
            job.id,
            source={S.SUBMITTING},
            target=S.RUNNING,
            where=[col(Job.lease_token) == token],
            upstream_task_id=result.task_id,
            upstream_status=result.status,
            submitted_at=now,
            submit_inflight_at=None,
            lease_token=None,
            lease_until=None,
            poll_errors=0,
            **timer.values,
        )
    if won:
        pauses.probe_succeeded(rt, job)
    if not won:
        # Canceled, expired or reclaimed while we were calling: the upstream task is orphaned (logged).
        log.warning(
            "job %s left submitting while its submit was in flight; upstream task %s unused",
            job.id,
            result.task_id,
        )
        return None
    return poll_step(job.id, timer.countdown) if timer.countdown is not None else None


def _retry_submit(rt: Runtime, s: Session, job: Job, token: str, exc: ProviderError) -> Step | None:
    settings = rt.settings
    if exc.kind == "rate_limited":
        counter, budget = "rate_limited_submits", settings.imagegen_max_submits_rate_limited
    else:
        counter, budget = "unavailable_submits", settings.imagegen_max_submits_unavailable
    spent = getattr(job, counter) + 1
    if spent >= budget:
        return fail_or_hold(
            rt,
            s,
            job,
            S.SUBMITTING,
            exc.kind,
            f"{exc.message} (after {spent} submit calls)",
            exc.http_status,
            lease=token,
            **{counter: spent},
        )
    delay = (
        exc.retry_after
        if exc.retry_after is not None
        else compute_backoff(
            spent, base=settings.imagegen_backoff_base_s, cap=settings.imagegen_backoff_cap_s, rng=rt.rng
        )
    )
    timer = schedule(rt.now(), delay, settings)
    won = transition(
        s,
        job.id,
        source={S.SUBMITTING},
        target=S.QUEUED,
        where=[col(Job.lease_token) == token],
        lease_token=None,
        lease_until=None,
        submit_inflight_at=None,
        last_error_kind=exc.kind,
        last_error_message=exc.message[:500],
        last_error_http_status=exc.http_status,
        **{counter: spent},
        **timer.values,
    )
    if won and timer.countdown is not None:
        return submit_step(job.id, job.priority, timer.countdown)
    return None
