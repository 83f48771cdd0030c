"""Bulk requeue: failed/expired/canceled jobs back to ``queued``, through ``transition_many``.

One compare-and-set per group, never a read followed by a write; returns the submit steps to publish."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from imagegen.messages import Step, submit_step
from imagegen.ops.actions import requeue_values
from imagegen.runtime import Runtime
from imagegen.store.models import Job
from imagegen.store.transitions import RETRYABLE_FROM, JobStatus, transition_many
from imagegen.webhooks import batches as batch_notices

#: Rows per statement: keeps ``IN (...)`` lists far below SQLite's bound-parameter limit.
CHUNK = 500


def retryable_status(status: str | JobStatus) -> JobStatus:
    """The status as a ``JobStatus`` that can be requeued (``ValueError`` otherwise)."""
    try:
        parsed = JobStatus(status)
    except ValueError:
        parsed = None
    if parsed not in RETRYABLE_FROM:
        allowed = ", ".join(sorted(s.value for s in RETRYABLE_FROM))
        raise ValueError(f"{status!r} cannot be requeued (one of {allowed})")
    assert parsed is not None
    return parsed


def _retry_filters(
    now: datetime, status: str | JobStatus, error_kind: str | None, provider: str | None, since: timedelta | None
) -> tuple[JobStatus, list[ColumnElement[bool]]]:
    """The requeueable status asked for, and the conditions ``find_retryable``/``retry_many`` select on."""
    wanted = retryable_status(status)
    where: list[ColumnElement[bool]] = [col(Job.status) == wanted.value]
    if error_kind:
        where.append(col(Job.error_kind) == error_kind)
    if provider:
        where.append(col(Job.provider) == provider)
    if since is not None:
        where.append(col(Job.finished_at) >= now - since)
    return wanted, where


def find_retryable(
    rt: Runtime,
    *,
    status: str | JobStatus = JobStatus.FAILED,
    error_kind: str | None = None,
    provider: str | None = None,
    since: timedelta | None = None,
    limit: int = 1000,
) -> list[str]:
    """Ids ``retry_many`` would requeue now with the same arguments, oldest ending first (a dry run)."""
    _, where = _retry_filters(rt.now(), status, error_kind, provider, since)
    with rt.session() as s:
        stmt = sa.select(col(Job.id)).where(*where).order_by(col(Job.finished_at), col(Job.id)).limit(limit)
        return list(s.scalars(stmt))


def retry_many(
    rt: Runtime,
    *,
    status: str | JobStatus = JobStatus.FAILED,
    error_kind: str | None = None,
    provider: str | None = None,
    since: timedelta | None = None,
    limit: int = 1000,
) -> list[Step]:
    """Requeue up to ``limit`` jobs in ``status`` (failed, expired or canceled), optionally only those
    with ``error_kind``, of ``provider``, or that ended within ``since``; oldest ending first.

    Returns the submit steps of the jobs this call moved, to publish after it returns (the rows are
    committed by then; a lost publish is released by the reconciler after the dispatch grace).
    """
    now = rt.now()
    wanted, where = _retry_filters(now, status, error_kind, provider, since)
    settings = rt.settings
    deadline = col(Job.request)["deadline_s"].as_float()
    # The batch to reopen, if the job's batch has a callback (others have no notification to reopen).
    hooked_batch = sa.case((col(Job.batch_callback), col(Job.batch_id)), else_=sa.null())
    with rt.session() as s:
        rows = s.execute(
            sa.select(col(Job.id), col(Job.priority), col(Job.provider), deadline, hooked_batch)
            .where(*where)
            .order_by(col(Job.finished_at), col(Job.id))
            .limit(limit)
        ).all()
        # One CAS per (deadline, chunk): each job keeps its own requested deadline, as admin.retry does.
        groups: dict[float, list[str]] = defaultdict(list)
        for job_id, _, _, deadline_s, _ in rows:
            groups[float(deadline_s or settings.timers.default_deadline_s)].append(job_id)
        moved: list[str] = []
        for deadline_s, ids in groups.items():
            values = requeue_values(now, deadline_s, settings.timers.dispatch_grace_s)
            for chunk in chunks(ids):
                moved += transition_many(
                    s, source={wanted}, target=JobStatus.QUEUED, where=[col(Job.id).in_(chunk), *where], **values
                )
        # Their batches' next finish is a new outcome.
        batch_of = {row[0]: row[4] for row in rows if row[4] is not None}
        reopened = sorted({batch_of[job_id] for job_id in moved if job_id in batch_of})
        for chunk in chunks(reopened):
            batch_notices.reopen(s, chunk)
    order = {row[0]: index for index, row in enumerate(rows)}
    routes = {job_id: (priority, prov) for job_id, priority, prov, _, _ in rows}
    return [submit_step(job_id, *routes[job_id]) for job_id in sorted(moved, key=order.__getitem__)]


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
