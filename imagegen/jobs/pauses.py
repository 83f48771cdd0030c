"""Paused provider keys: resume, and the optional probe that lets a topped-up account resume by itself.

A 401/402/403 holds the job that hit it and pauses the key in the database (``provider_state``), so
a flushed Redis cannot lift it. While paused, the key's queued jobs stay parked with no message in
flight. ``imagegen resume`` lifts the pause; with ``IMAGEGEN_PAUSE_PROBE_S`` set the reconciler also
sends one job now and then as a probe, and the probe's success lifts the pause.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from imagegen.errors import UnknownProvider
from imagegen.messages import Step, poll_step, submit_step
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job, ProviderState
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition, transition_many, update_in


def blocks(s: Session, job: Job) -> bool:
    """Whether the job's provider key is paused for it (the current probe job passes)."""
    state = repo.get_provider_state(s, job.provider)
    return bool(state and state.paused and state.probe_job_id != job.id)


def resume(rt: Runtime, provider: str) -> str:
    """Unpause a key and return its held jobs to work: queued, or running if already submitted
    (resuming a job held on a poll must poll its upstream task again, not pay for a new one)."""
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
            "error_http_status": None,
        }
        mine = col(Job.provider) == provider
        requeued = transition_many(
            s,
            source={S.HELD},
            target=S.QUEUED,
            where=[mine, col(Job.upstream_task_id).is_(None)],
            rate_limited_submits=0,
            unavailable_submits=0,
            **back,
        )
        repolled = transition_many(
            s,
            source={S.HELD},
            target=S.RUNNING,
            where=[mine, col(Job.upstream_task_id).is_not(None)],
            poll_errors=0,
            **back,
        )
        parked = s.execute(sa.select(sa.func.count()).where(mine, col(Job.status) == S.QUEUED.value)).scalar_one()
    state = "unpaused" if was_paused else "was not paused"
    # Everything is due now; the reconciler's next run (seconds) publishes the messages.
    return (
        f"{provider} {state}; {len(requeued)} held jobs requeued, {len(repolled)} polling again, "
        f"{parked} queued jobs in all will be released by the reconciler"
    )


def probe_succeeded(rt: Runtime, job: Job) -> None:
    """Called after an upstream call for ``job`` succeeded: if it was the probe, lift the pause."""
    if rt.settings.timers.pause_probe_s <= 0:
        return  # no probes are ever sent, so there is nothing to look up on this hot path
    with rt.session() as s:
        state = repo.get_provider_state(s, job.provider)
        is_probe = bool(state and state.paused and state.probe_job_id == job.id)
    if is_probe:
        resume(rt, job.provider)


def send_probes(rt: Runtime, s: Session, now: datetime) -> list[Step]:
    """Pick one job per paused key whose probe is due and release it (held → queued/running)."""
    interval = rt.settings.timers.pause_probe_s
    if interval <= 0:
        return []
    due = now - timedelta(seconds=interval)
    steps: list[Step] = []
    states = s.scalars(
        sa.select(ProviderState).where(
            col(ProviderState.paused).is_(True),
            col(ProviderState.paused_at) <= due,
            sa.or_(col(ProviderState.probe_at).is_(None), col(ProviderState.probe_at) <= due),
        )
    ).all()
    for state in states:
        job = _probe_candidate(s, state.provider)
        if job is None:
            continue
        claimed = s.execute(
            sa.update(ProviderState)
            .where(
                col(ProviderState.provider) == state.provider,
                col(ProviderState.paused).is_(True),
                sa.or_(col(ProviderState.probe_at).is_(None), col(ProviderState.probe_at) <= due),
            )
            .values(probe_job_id=job.id, probe_at=now)
        )
        if int(getattr(claimed, "rowcount", 0)) != 1:
            continue  # another reconciler sent this round's probe
        step = _release(rt, s, job, now)
        if step is not None:
            steps.append(step)
    return steps


def _probe_candidate(s: Session, provider: str) -> Job | None:
    # The oldest held job first (it hit the account error), else the oldest parked queued job.
    for status in (S.HELD, S.QUEUED):
        job = s.scalars(
            sa.select(Job)
            .where(col(Job.provider) == provider, col(Job.status) == status.value)
            .order_by(col(Job.created_at))
            .limit(1)
        ).first()
        if job is not None:
            return job
    return None


def _release(rt: Runtime, s: Session, job: Job, now: datetime) -> Step | None:
    grace = now + timedelta(seconds=rt.settings.timers.dispatch_grace_s)
    timer: dict[str, Any] = {"next_attempt_at": now, "dispatch_until": grace}
    if job.status == S.QUEUED:
        return (
            submit_step(job.id, job.priority, job.provider) if update_in(s, job.id, status=S.QUEUED, **timer) else None
        )
    if job.upstream_task_id:
        won = transition(s, job.id, source={S.HELD}, target=S.RUNNING, poll_errors=0, **timer)
        return poll_step(job.id) if won else None
    won = transition(
        s, job.id, source={S.HELD}, target=S.QUEUED, rate_limited_submits=0, unavailable_submits=0, **timer
    )
    return submit_step(job.id, job.priority, job.provider) if won else None
