"""The in-flight cap per provider key (``max_in_flight``): admission, parking, and release as slots free.

The database is the source of truth for what is in flight, so the cap survives a flushed Redis. A job
that finds the cap full is **parked**: ``queued`` with ``wait_reason = 'slot'``, no timer, no message.
When a job leaves the in-flight set (its submit or poll task ends it, holds it or requeues it) the task
releases as many parked jobs as there are free slots (less those released earlier whose message is still
on its way), interactive first, then oldest first; the reconciler does the same each run as a backstop
(a job canceled by an operator, a lost wake-up). A released job keeps ``wait_reason`` until it claims
its slot, so batch jobs keep yielding to it meanwhile.

Admission is exact under concurrency: on SQLite every write transaction is ``BEGIN IMMEDIATE`` (one at a
time); on PostgreSQL a per-provider transaction-level advisory lock serialises the count and the claim.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from imagegen.constants import PROVIDERS
from imagegen.messages import Step, submit_step
from imagegen.runtime import Runtime
from imagegen.store.models import JOBS, Job, ProviderState
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import update_in

#: ``wait_reason`` of a job parked for an in-flight slot.
SLOT = "slot"
#: Statuses in which a job holds an upstream task (or is about to).
IN_FLIGHT = [S.SUBMITTING.value, S.RUNNING.value, S.FINALIZING.value]


def cap_of(rt: Runtime, provider: str) -> int | None:
    """The provider key's ``max_in_flight``, or None (no cap)."""
    cap = rt.settings.provider_limits.get(provider, {}).get("max_in_flight")
    return None if cap is None else int(cap)


def _busy(s: Session, provider: str) -> int:
    query = sa.select(sa.func.count()).where(JOBS.c.provider == provider, JOBS.c.status.in_(IN_FLIGHT))
    return int(s.execute(query).scalar_one())


def _waiting(provider: str) -> list[sa.ColumnElement[bool]]:
    return [JOBS.c.status == S.QUEUED.value, JOBS.c.provider == provider, JOBS.c.wait_reason == SLOT]


def admit(rt: Runtime, s: Session, job: Job) -> bool:
    """Whether ``job`` may take an in-flight slot now. Call it in the transaction that then claims the job
    (``queued → submitting``): the decision holds until that transaction commits."""
    cap = cap_of(rt, job.provider)
    if cap is None:
        return True
    if s.get_bind().dialect.name == "postgresql":
        s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"imagegen-slot:{job.provider}"})
    if _busy(s, job.provider) >= cap:
        return False
    if job.priority == "interactive":
        return True
    # A batch job leaves one free slot to each interactive job waiting for one (parked, or released and on
    # its way), and takes any other: refusing every slot while one interactive job is on its way made each
    # batch job park and be released again at once (parking releases, see ``release_after``).
    query = sa.select(sa.func.count()).where(
        *_waiting(job.provider), JOBS.c.priority == "interactive", JOBS.c.id != job.id
    )
    return _busy(s, job.provider) + int(s.execute(query).scalar_one()) < cap


def park(s: Session, job_id: str) -> bool:
    """Park a queued job until a slot frees: no timer, no message in flight, no rate reservation kept."""
    return update_in(
        s, job_id, status=S.QUEUED, wait_reason=SLOT, next_attempt_at=None, dispatch_until=None, rate_reserved=False
    )


def release(rt: Runtime, s: Session, provider: str, now: datetime) -> list[Step]:
    """Release parked jobs of ``provider`` into its free slots (interactive first, then oldest first)."""
    cap = cap_of(rt, provider)
    idle = sa.or_(JOBS.c.dispatch_until.is_(None), JOBS.c.dispatch_until < now)
    if cap is None:
        # No cap (any more: parked under a cap the processes were restarted without): release them all.
        free = rt.settings.timers.release_batch
    else:
        # A job released earlier whose message is still on its way holds its slot: else each batch job that
        # yields to it would release the next batch job into that slot (a busy loop until it lands).
        on_way = sa.select(sa.func.count()).where(*_waiting(provider), sa.not_(idle))
        free = cap - _busy(s, provider) - int(s.execute(on_way).scalar_one())
    if free <= 0:
        return []
    paused = s.execute(
        sa.select(col(ProviderState.paused)).where(col(ProviderState.provider) == provider)
    ).scalar_one_or_none()
    if paused:
        return []  # resume releases a paused key's jobs; a message now would only park them again
    candidates = (
        sa.select(JOBS.c.id)
        .where(*_waiting(provider), idle)
        .order_by(sa.case((JOBS.c.priority == "interactive", 0), else_=1), JOBS.c.created_at)
        .limit(free)
    )
    grace = now + timedelta(seconds=rt.settings.timers.dispatch_grace_s)
    stmt = (
        sa.update(JOBS)
        .where(JOBS.c.id.in_(candidates.scalar_subquery()), *_waiting(provider), idle)
        .values(next_attempt_at=now, dispatch_until=grace, updated_at=now)
        .returning(JOBS.c.id, JOBS.c.priority)
    )
    return [submit_step(job_id, priority, provider) for job_id, priority in s.execute(stmt).tuples()]


def release_after(rt: Runtime, served: Job | None) -> list[Step]:
    """After a submit or poll task served ``served``: if the job no longer holds a slot, hand free slots on."""
    if served is None or cap_of(rt, served.provider) is None:
        return []
    with rt.session() as s:
        status = s.execute(sa.select(JOBS.c.status).where(JOBS.c.id == served.id)).scalar_one_or_none()
        if status in IN_FLIGHT:
            return []
        return release(rt, s, served.provider, rt.now())


def release_all(rt: Runtime, s: Session, now: datetime) -> list[Step]:
    """The reconciler's pass: release into every provider's free slots. Uncapped providers too: a job
    parked under a cap that a restart removed has no timer and no message, and would wait for its deadline."""
    steps: list[Step] = []
    for provider in PROVIDERS:
        steps += release(rt, s, provider, now)
    return steps
