"""Where the limiter and the learned durations meet the job flow (both live in Redis, both fail soft)."""

from __future__ import annotations

from datetime import datetime

from imagegen.runtime import Runtime
from imagegen.store.models import Job
from imagegen.timing.durations import blend, duration_key, estimate_from_progress, observed_duration
from imagegen.timing.polls import expected_duration


def expected_for(rt: Runtime, job: Job) -> float:
    """Expected render time: the configured table, overridden by the learned running median once known.

    A configured 0 ("poll at once") is an operator's explicit choice and is never overridden.
    """
    quality, resolution = job.request.get("quality"), job.request.get("resolution")
    configured = expected_duration(rt.settings.expected_durations, job.provider, job.model, quality, resolution)
    if configured <= 0 or rt.learner is None:
        return configured
    return blend(configured, rt.learner.median(duration_key(job.provider, job.model, quality, resolution)))


def learn_from(rt: Runtime, job: Job, now: datetime, *, exact: bool) -> None:
    """Record how long the upstream took for a job just found finished (``job`` as read before this poll)."""
    if rt.learner is None or job.submitted_at is None:
        return
    detected = (now - job.submitted_at).total_seconds()
    # Before this poll, the row was last touched by the previous "still running" answer, if any.
    last_running = (job.updated_at - job.submitted_at).total_seconds() if job.polls > 0 else None
    predicted = None
    if last_running is not None and (remaining := estimate_from_progress(last_running, job.progress)) is not None:
        predicted = last_running + remaining
    sample = observed_duration(detected, last_running, predicted_s=predicted, exact=exact)
    key = duration_key(job.provider, job.model, job.request.get("quality"), job.request.get("resolution"))
    rt.learner.record(key, sample)
