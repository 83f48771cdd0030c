"""Submitting a job upstream: claim with a lease, one POST, classify the outcome, schedule what follows.

An async provider answers with a task id (``submitting → running``, then polls); a synchronous one
(OpenAI) answers with the images, which are stored before the job is marked ``succeeded``.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy.orm import Session

from config.limits import submit_lease_s
from imagegen.constants import ERROR_MESSAGE_CHARS, SUBMIT_TASK, clip
from imagegen.errors import ErrorKind, ProviderError, RequestInvalid
from imagegen.jobs import pauses, slots
from imagegen.jobs.attempts import log_call
from imagegen.jobs.downloads import error_kind_for, store_results
from imagegen.jobs.endings import expire_if_due, fail_or_hold, follow_up
from imagegen.jobs.expected import expected_for
from imagegen.jobs.fallback import switch_provider
from imagegen.messages import Step, poll_step, submit_step
from imagegen.metrics import observe_unknown_job
from imagegen.providers import SubmitResult
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import JOBS, Job
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition, update_in
from imagegen.timing.backoff import retry_delay
from imagegen.timing.polls import first_poll_delay, webhook_factor
from imagegen.timing.timers import EARLY_SLACK, schedule
from imagegen.webhooks.inbound import callback_url

log = logging.getLogger(__name__)


def submit_job(rt: Runtime, job_id: str) -> list[Step]:
    """Serve one ``imagegen.submit`` message; returns the messages to publish next."""
    job, step = _submit(rt, job_id)
    return ([step] if step else []) + follow_up(rt, job, step)


def lease_seconds(rt: Runtime, provider: str) -> float:
    """A submit lease outlives the task's hard time limit, so a live call is never overtaken."""
    return submit_lease_s(rt.settings, synchronous=rt.provider(provider).synchronous)


def _submit(rt: Runtime, job_id: str) -> tuple[Job | None, Step | None]:
    """The job as read (None if the message is stale) and the next message."""
    now = rt.now()
    with rt.session() as s:
        job = repo.get_job(s, job_id)
        if job is None:
            observe_unknown_job(SUBMIT_TASK, job_id)
        if job is None or job.status != S.QUEUED:
            return None, None  # stale or duplicate message: the row says what is true
        if expire_if_due(s, job, now):
            return job, None
        if pauses.blocks(s, job):
            # Another provider in the job's fallback route, or park without a message (the reconciler
            # skips paused providers; resume releases them).
            state = repo.get_provider_state(s, job.provider)
            reason = (state.reason if state else None) or ErrorKind.INSUFFICIENT_CREDITS.value
            step = switch_provider(rt, s, job, S.QUEUED, reason, f"{job.provider} key is paused")
            if step is None:
                update_in(s, job_id, status=S.QUEUED, dispatch_until=None)
            return job, step
        if job.next_attempt_at is not None and job.next_attempt_at > now + EARLY_SLACK:
            return job, None  # an early, stale copy: the message for the real due time is on its way
        if not slots.admit(rt, s, job):
            # The in-flight cap is full: park in the database; a slot freeing releases it (no polling).
            slots.park(s, job_id)
            return job, None
        wait, reserved = _rate_wait(rt, job)
        if wait > 0:
            # Not an error and no budget spent: try again when the shared limits allow.
            timer = schedule(now, wait, rt.settings)
            update_in(s, job_id, status=S.QUEUED, rate_reserved=reserved, wait_reason=None, **timer.values)
            if timer.countdown is None:
                return job, None  # a long wait: the reconciler releases it when due
            return job, submit_step(job_id, job.priority, job.provider, timer.countdown)
        token = str(uuid.uuid4())
        due = or_(JOBS.c.next_attempt_at.is_(None), JOBS.c.next_attempt_at <= now + EARLY_SLACK)
        lease_until = now + timedelta(seconds=lease_seconds(rt, job.provider))
        # Committed before the POST, with the in-flight mark: if we die after it, the reconciler knows
        # a generation may be paid for.
        if not transition(
            s,
            job_id,
            source={S.QUEUED},
            target=S.SUBMITTING,
            where=[due],
            lease_token=token,
            lease_until=lease_until,
            dispatch_until=None,
            rate_reserved=False,
            wait_reason=None,
            submit_inflight_at=now,
            submit_attempts=JOBS.c.submit_attempts + 1,
        ):
            return job, None  # another worker claimed it, or this message is early and stale
    return job, _call_upstream(rt, job, token)


def _rate_wait(rt: Runtime, job: Job) -> tuple[float, bool]:
    """Seconds to wait for the provider key's global rate (Redis, shared by every worker; 0 means go), and
    whether the limiter reserved a slot for this job at the end of that wait."""
    if rt.limiter is None:
        return 0.0, False
    grant = rt.limiter.request(job.provider, reserved=job.rate_reserved, priority=job.priority)
    return grant.wait_s, grant.reserved


#: Statuses in which a job holds an upstream task (or is about to).
IN_FLIGHT = slots.IN_FLIGHT


def _call_upstream(rt: Runtime, job: Job, token: str) -> Step | None:
    provider = rt.provider(job.provider)
    started = time.monotonic()
    try:
        request = ImageRequest.from_dict(job.request, allow_private_urls=True)
        result = provider.submit(
            request, callback_url=callback_url(rt.settings, job.provider, job.id), idempotency_key=job.id
        )
    except RequestInvalid as exc:  # only if validation rules changed since intake
        with rt.session() as s:
            return fail_or_hold(rt, s, job, S.SUBMITTING, exc.kind, str(exc), None, lease=token)
    except ProviderError as exc:
        with rt.session() as s:
            kind = ErrorKind.SUBMIT_OUTCOME_UNKNOWN if exc.maybe_sent else exc.kind
            log_call(s, job, "submit", started, http_status=exc.http_status, error_kind=kind, message=exc.message)
            if exc.maybe_sent:
                return _outcome_unknown(rt, s, job, token, exc)
            if exc.retryable:
                return _retry_submit(rt, s, job, token, exc)
            return fail_or_hold(rt, s, job, S.SUBMITTING, exc.kind, exc.message, exc.http_status, lease=token)
    if provider.synchronous:
        with rt.session() as s:
            log_call(s, job, "submit", started, http_status=result.http_status)
        return _answered(rt, job, token, result)
    return _accepted(rt, job, token, result, started)


def _accepted(rt: Runtime, job: Job, token: str, result: SubmitResult, started: float) -> Step | None:
    """An async provider took the job: record its task id and schedule the first (informed) poll."""
    # In the log before the database has it: if this process dies now, an operator can still find the task.
    log.info("job %s: %s accepted it as upstream task %s", job.id, job.provider, result.task_id)
    now = rt.now()
    timer = schedule(
        now, first_poll_delay(expected_for(rt, job)) * webhook_factor(rt.settings, job.provider), rt.settings
    )
    with rt.session() as s:
        log_call(s, job, "submit", started, http_status=result.http_status, upstream_task_id=result.task_id)
        won = transition(
            s,
            job.id,
            source={S.SUBMITTING},
            target=S.RUNNING,
            where=[JOBS.c.lease_token == token],
            upstream_task_id=result.task_id,
            upstream_status=result.status,
            submitted_at=now,
            submit_inflight_at=None,
            lease_token=None,
            lease_until=None,
            poll_errors=0,
            **timer.values,
        )
    if rt.limiter is not None:
        rt.limiter.record_success(job.provider)
    if not won:
        # Canceled, expired or reclaimed while we were calling: the upstream task is orphaned (logged).
        log.warning("job %s left submitting during its submit; upstream task %s unused", job.id, result.task_id)
        return None
    pauses.probe_succeeded(rt, job)
    return poll_step(job.id, timer.countdown) if timer.countdown is not None else None


def _answered(rt: Runtime, job: Job, token: str, result: SubmitResult) -> Step | None:
    """A synchronous provider answered with the images: store them, then ``submitting → succeeded``."""
    pauses.probe_succeeded(rt, job)
    if rt.limiter is not None:
        rt.limiter.record_success(job.provider)
    mine = [JOBS.c.lease_token == token]
    try:
        entries = store_results(rt, job.id, result.images)
    except Exception as exc:
        # Paid for, but we could not keep it: fail loudly rather than pretend (no retry would be free). Any
        # error escaping here would leave the job submitting, and the lease recovery would POST (pay) again.
        kind = error_kind_for(exc)  # result_unavailable when the answer's image is gone or not an image
        with rt.session() as s:
            transition(
                s,
                job.id,
                source={S.SUBMITTING},
                target=S.FAILED,
                where=mine,
                error_kind=kind.value,
                error_message=clip(f"storing the result failed: {exc}", ERROR_MESSAGE_CHARS),
                submit_inflight_at=None,
                usage=result.usage,
            )
        return None
    with rt.session() as s:
        transition(
            s,
            job.id,
            source={S.SUBMITTING},
            target=S.SUCCEEDED,
            where=mine,
            result=entries,
            usage=result.usage,
            upstream_status=result.status,
            submitted_at=rt.now(),
            submit_inflight_at=None,
            error_kind=None,
            error_message=None,
            error_http_status=None,
        )
    return None


def _outcome_unknown(rt: Runtime, s: Session, job: Job, token: str, exc: ProviderError) -> Step | None:
    """The POST may have created an upstream task we know nothing of: under ``at_most_once`` the job fails
    ``submit_outcome_unknown`` now; under ``at_least_once`` it is POSTed again (same Idempotency-Key) at
    most ``IMAGEGEN_MAX_SUBMITS_UNKNOWN`` times. Never the fallback route: that would be a second payment
    too. Only errors where nothing was sent spend the ``upstream_unavailable`` budget."""
    settings = rt.settings
    spent = job.unknown_submits + 1
    if settings.imagegen_submit_policy == "at_most_once" or spent > settings.budgets.unknown_submits:
        message = (
            f"{exc.message}: the upstream may have accepted the request (after {spent} submit "
            f"{'call' if spent == 1 else 'calls'} with an unknown outcome; policy {settings.imagegen_submit_policy})"
        )
        log.warning("job %s: submit outcome unknown, failing it (%s)", job.id, exc.message)
        kind = ErrorKind.SUBMIT_OUTCOME_UNKNOWN
        return fail_or_hold(
            rt, s, job, S.SUBMITTING, kind, message, exc.http_status, lease=token, unknown_submits=spent
        )
    log.warning(
        "job %s: submit outcome unknown (%s), submitting again with the same idempotency key", job.id, exc.message
    )
    return _requeue_submit(rt, s, job, token, exc, "unknown_submits", spent)


def _retry_submit(rt: Runtime, s: Session, job: Job, token: str, exc: ProviderError) -> Step | None:
    settings = rt.settings
    if exc.kind == ErrorKind.RATE_LIMITED:
        counter, budget = "rate_limited_submits", settings.budgets.rate_limited_submits
    else:
        counter, budget = "unavailable_submits", settings.budgets.unavailable_submits
    spent = getattr(job, counter) + 1
    if spent >= budget:
        message = f"{exc.message} (after {spent} submit calls)"
        return fail_or_hold(
            rt, s, job, S.SUBMITTING, exc.kind, message, exc.http_status, lease=token, **{counter: spent}
        )
    return _requeue_submit(rt, s, job, token, exc, counter, spent)


def _requeue_submit(
    rt: Runtime, s: Session, job: Job, token: str, exc: ProviderError, counter: str, spent: int
) -> Step | None:
    """``submitting → queued`` with ``counter`` at ``spent``, due after Retry-After or the backoff."""
    settings = rt.settings
    delay = exc.retry_after
    if delay is None:
        delay = retry_delay(spent, settings.backoff, rt.rng)
    if exc.kind == ErrorKind.RATE_LIMITED and rt.limiter is not None:
        # Every worker backs off together until the shared not-before; the adaptive rate drops.
        delay = max(delay, rt.limiter.penalize(job.provider, exc.retry_after))
    kind = ErrorKind.SUBMIT_OUTCOME_UNKNOWN if exc.maybe_sent else exc.kind
    timer = schedule(rt.now(), delay, settings)
    won = transition(
        s,
        job.id,
        source={S.SUBMITTING},
        target=S.QUEUED,
        where=[JOBS.c.lease_token == token],
        lease_token=None,
        lease_until=None,
        submit_inflight_at=None,
        last_error_kind=kind,
        last_error_message=clip(exc.message),
        last_error_http_status=exc.http_status,
        **{counter: spent},
        **timer.values,
    )
    if won and timer.countdown is not None:
        return submit_step(job.id, job.priority, job.provider, timer.countdown)
    return None
