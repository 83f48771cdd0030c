"""Typed, keyword-only queries on the store. Status changes are not here: they live in ``transitions``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from imagegen.constants import clip
from imagegen.request import DEFAULT_TENANT
from imagegen.store.models import ATTEMPTS, JOBS, Attempt, Batch, Job, ProviderState, utcnow


def insert_jobs(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert job rows given as column values: one Core INSERT executed for all of them (executemany)."""
    if rows:
        session.execute(sa.insert(JOBS), list(rows))


def get_job(session: Session, job_id: str) -> Job | None:
    """The job with this id, or None."""
    return session.get(Job, job_id, populate_existing=True)


def get_jobs(session: Session, job_ids: Sequence[str]) -> list[Job]:
    """The jobs with these ids, in the order given (unknown ids are left out)."""
    if not job_ids:
        return []
    found = {j.id: j for j in session.scalars(sa.select(Job).where(col(Job.id).in_(list(job_ids))))}
    return [found[i] for i in job_ids if i in found]


def queue_position(session: Session, job: Job) -> int | None:
    """How many queued jobs of the same provider go before ``job`` (0: it is next); None unless it is queued.

    Approximate: interactive jobs go before batch ones, and within a priority earlier due times go
    first, as the queues serve them; held keys, limits and fallback can still reorder them.
    """
    if job.status != "queued" or job.next_attempt_at is None:
        return None
    due_before = sa.or_(
        col(Job.next_attempt_at) < job.next_attempt_at,
        sa.and_(col(Job.next_attempt_at) == job.next_attempt_at, col(Job.id) < job.id),
    )
    ahead = sa.and_(col(Job.priority) == job.priority, due_before)
    if job.priority != "interactive":
        ahead = sa.or_(col(Job.priority) == "interactive", ahead)
    stmt = sa.select(sa.func.count()).where(col(Job.status) == "queued", col(Job.provider) == job.provider, ahead)
    return int(session.scalar(stmt) or 0)


def get_job_by_idempotency_key(session: Session, key: str, *, tenant: str = DEFAULT_TENANT) -> Job | None:
    """The job ``tenant`` created with this idempotency key, or None (keys are unique per tenant)."""
    stmt = sa.select(Job).where(col(Job.tenant) == tenant, col(Job.idempotency_key) == key)
    return session.scalars(stmt).first()


def job_ids_with_prefix(session: Session, prefix: str, *, limit: int = 10) -> list[str]:
    """Ids of the jobs whose id starts with ``prefix`` (hex digits and dashes only), at most ``limit``."""
    if not prefix or any(c not in "0123456789abcdef-" for c in prefix):
        return []
    stmt = sa.select(col(Job.id)).where(col(Job.id).startswith(prefix, autoescape=True)).order_by(col(Job.id))
    return list(session.scalars(stmt.limit(limit)))


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    batch_id: str | None = None,
    provider: str | None = None,
    error_kind: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    tenant: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 100,
) -> Sequence[Job]:
    """Jobs, newest first (ties by id), filtered; ``after``: only those past that ``(created_at, id)``.

    ``after`` is a keyset cursor: rows inserted meanwhile are newer than any page already read, so
    paging on is never shifted by them (no repeats, no gaps), unlike an OFFSET.
    """
    stmt = sa.select(Job).order_by(col(Job.created_at).desc(), col(Job.id))
    if tenant is not None:
        stmt = stmt.where(col(Job.tenant) == tenant)
    if after is not None:
        at, job_id = after
        stmt = stmt.where(sa.or_(col(Job.created_at) < at, sa.and_(col(Job.created_at) == at, col(Job.id) > job_id)))
    if status:
        stmt = stmt.where(col(Job.status) == status)
    if batch_id:
        stmt = stmt.where(col(Job.batch_id) == batch_id)
    if provider:
        stmt = stmt.where(col(Job.provider) == provider)
    if error_kind:
        stmt = stmt.where(col(Job.error_kind) == error_kind)
    if created_after:
        stmt = stmt.where(col(Job.created_at) >= created_after)
    if created_before:
        stmt = stmt.where(col(Job.created_at) < created_before)
    return session.scalars(stmt.limit(limit)).all()


def count_by_status(session: Session, *, batch_id: str | None = None, tenant: str | None = None) -> dict[str, int]:
    """``{status: n}`` over all jobs or one batch (of one tenant, if given)."""
    stmt = sa.select(col(Job.status), sa.func.count()).group_by(col(Job.status))
    if tenant is not None:
        stmt = stmt.where(col(Job.tenant) == tenant)
    if batch_id:
        stmt = stmt.where(col(Job.batch_id) == batch_id)
    return {status: int(n) for status, n in session.execute(stmt).all()}


def get_batch(session: Session, batch_id: str) -> Batch | None:
    """The batch row with this id, or None (a batch queued before batches had rows has one from the migration)."""
    return session.get(Batch, batch_id, populate_existing=True)


def record_attempt(
    session: Session,
    *,
    job_id: str,
    provider: str,
    kind: str,
    duration_ms: int,
    http_status: int | None = None,
    error_kind: str | None = None,
    message: str | None = None,
    upstream_task_id: str | None = None,
) -> None:
    """Append one upstream call to the attempt log (a Core INSERT: this runs for every upstream call)."""
    session.execute(
        sa.insert(ATTEMPTS).values(
            job_id=job_id,
            provider=provider,
            kind=kind,
            duration_ms=duration_ms,
            http_status=http_status,
            error_kind=error_kind,
            message=(message or None) and clip(message),
            upstream_task_id=upstream_task_id,
            created_at=utcnow(),
        )
    )


def list_attempts(session: Session, job_id: str) -> Sequence[Attempt]:
    """The attempt log of one job, oldest first."""
    return session.scalars(sa.select(Attempt).where(col(Attempt.job_id) == job_id).order_by(col(Attempt.id))).all()


def get_provider_state(session: Session, provider: str) -> ProviderState | None:
    """The pause state of one provider (None for a provider this database does not know)."""
    return session.get(ProviderState, provider, populate_existing=True)


def pause_provider(session: Session, *, provider: str, reason: str, message: str | None) -> bool:
    """Pause a provider key; True if this call paused it (it was running)."""
    now = utcnow()
    result: Any = session.execute(
        sa.update(ProviderState)
        .where(col(ProviderState.provider) == provider, col(ProviderState.paused).is_(False))
        .values(paused=True, reason=reason, message=clip(message or ""), paused_at=now, updated_at=now)
    )
    return int(result.rowcount) == 1


def unpause_provider(session: Session, *, provider: str) -> bool:
    """Lift a pause; True if the provider was paused."""
    result: Any = session.execute(
        sa.update(ProviderState)
        .where(col(ProviderState.provider) == provider, col(ProviderState.paused).is_(True))
        .values(
            paused=False,
            reason=None,
            message=None,
            paused_at=None,
            probe_job_id=None,
            probe_at=None,
            updated_at=utcnow(),
        )
    )
    return int(result.rowcount) == 1
