"""The job state machine, and the only code that changes a job's status.

Every change is one compare-and-set ``UPDATE jobs SET status=… WHERE id=… AND status IN (…)`` whose
row count says whether this caller won; never a read in Python followed by a write. Racing polls,
webhooks, retries and reconcilers therefore produce exactly one transition.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from imagegen.errors import InvalidTransition
from imagegen.metrics import observe_end
from imagegen.store import changes
from imagegen.store.models import JOBS, Job, utcnow


class JobStatus(StrEnum):
    """Where a job is in its life (README, 'How a job flows')."""

    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    FINALIZING = "finalizing"
    HELD = "held"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"


S = JobStatus
TERMINAL: frozenset[JobStatus] = frozenset({S.SUCCEEDED, S.FAILED, S.EXPIRED, S.CANCELED})
ACTIVE: frozenset[JobStatus] = frozenset(JobStatus) - TERMINAL
RETRYABLE_FROM: frozenset[JobStatus] = frozenset({S.FAILED, S.EXPIRED, S.CANCELED})

#: Allowed edges. Beyond the plain lifecycle: ``held → running`` (a job held on a *poll* already has an upstream
#: task; resuming it must poll again, not pay for a second generation) and ``finalizing → running``
#: (a finalizer died: the reconciler hands the job back to polling).
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.SUBMITTING, S.EXPIRED, S.CANCELED}),
    S.SUBMITTING: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.QUEUED, S.HELD, S.EXPIRED, S.CANCELED}),
    S.RUNNING: frozenset({S.FINALIZING, S.FAILED, S.HELD, S.EXPIRED, S.CANCELED}),
    S.FINALIZING: frozenset({S.SUCCEEDED, S.FAILED, S.RUNNING, S.EXPIRED, S.CANCELED}),
    S.HELD: frozenset({S.QUEUED, S.RUNNING, S.EXPIRED, S.CANCELED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),
    S.EXPIRED: frozenset({S.QUEUED}),
    S.CANCELED: frozenset({S.QUEUED}),
}


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    """Whether the state machine has the edge ``source → target``."""
    return target in TRANSITIONS[source]


def check(sources: Iterable[JobStatus], target: JobStatus) -> None:
    """Raise ``InvalidTransition`` unless every ``source → target`` edge exists."""
    bad = [s for s in sources if not can_transition(s, target)]
    if bad:
        raise InvalidTransition(f"{', '.join(b.value for b in bad)} → {target.value} is not a lifecycle edge")


def _values(target: JobStatus | None, values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"updated_at": utcnow(), **values}
    if target is not None:
        out["status"] = target.value
        if target in TERMINAL:
            out.setdefault("finished_at", out["updated_at"])
            # A terminal job holds nothing: no lease, no timer, no message expected.
            out.update(next_attempt_at=None, dispatch_until=None, lease_token=None, lease_until=None)
    return out


def transition(
    session: Session,
    job_id: str,
    *,
    source: Collection[JobStatus],
    target: JobStatus,
    where: Iterable[ColumnElement[bool]] = (),
    **values: Any,
) -> bool:
    """Move one job from any of ``source`` to ``target`` in one CAS statement; True if this call won.

    ``where``/``values`` expressions should use ``JOBS.c`` columns: ORM attributes would send the
    statement through the ORM's bulk-update machinery, which costs more than the UPDATE itself.
    """
    check(source, target)
    stmt = (
        sa.update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.status.in_([s.value for s in source]), *where)
        .values(**_values(target, values))
    )
    won = _rowcount(session.execute(stmt)) == 1
    if won:
        changes.note(session, (job_id,))
        if target in TERMINAL:
            observe_end(target.value, values.get("error_kind"))
    return won


def update_in(
    session: Session,
    job_id: str,
    *,
    status: JobStatus,
    where: Iterable[ColumnElement[bool]] = (),
    **values: Any,
) -> bool:
    """Change fields of a job only while it is still in ``status`` (a CAS without a status change)."""
    stmt = (
        sa.update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.status == status.value, *where)
        .values(**_values(None, values))
    )
    won = _rowcount(session.execute(stmt)) == 1
    if won:
        changes.note(session, (job_id,))  # progress and upstream status are news to a watcher too
    return won


def transition_many(
    session: Session,
    *,
    source: Collection[JobStatus],
    target: JobStatus,
    where: Iterable[ColumnElement[bool]] = (),
    limit: int | None = None,
    **values: Any,
) -> list[str]:
    """Claim every matching job (up to ``limit``) in one CAS statement and return the ids this call moved.

    The conditions are repeated in the outer ``WHERE`` so that, on PostgreSQL, a concurrent claimer's
    update makes the row fail the re-check instead of being claimed twice.
    """
    check(source, target)
    conditions = [col(Job.status).in_([s.value for s in source]), *where]
    moved = _claim(session, conditions, _values(target, values), limit)
    changes.note(session, moved)
    return moved


def claim_in(
    session: Session,
    *,
    status: Collection[JobStatus],
    where: Iterable[ColumnElement[bool]] = (),
    limit: int | None = None,
    **values: Any,
) -> list[str]:
    """Like ``transition_many`` without a status change (e.g. mark due jobs as dispatched)."""
    conditions = [col(Job.status).in_([s.value for s in status]), *where]
    return _claim(session, conditions, _values(None, values), limit)


def _claim(session: Session, conditions: list[Any], values: dict[str, Any], limit: int | None) -> list[str]:
    candidates = sa.select(col(Job.id)).where(*conditions).order_by(col(Job.next_attempt_at))
    if limit is not None:
        candidates = candidates.limit(limit)
    stmt = (
        sa.update(Job)
        .where(col(Job.id).in_(candidates.scalar_subquery()), *conditions)
        .values(**values)
        .returning(col(Job.id))
        .execution_options(synchronize_session=False)
    )
    return list(session.execute(stmt).scalars())


def _rowcount(result: Any) -> int:
    return int(result.rowcount)
