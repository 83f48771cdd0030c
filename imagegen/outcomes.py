"""Ending or holding a job: the shared endings of submits, polls and the reconciler."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from sqlmodel import col

from imagegen.errors import ACCOUNT_KINDS, ErrorKind
from imagegen.lifecycle import JobStatus as S
from imagegen.lifecycle import transition
from imagegen.runtime import Runtime
from imagegen.steps import Step
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.timers import park


def fail_or_hold(
    rt: Runtime,
    s: Session,
    job: Job,
    source: S,
    kind: str,
    message: str,
    http_status: int | None,
    *,
    lease: str | None = None,
    **extra: Any,
) -> Step | None:
    """Fail the job for ``kind``, or for account errors hold it and pause its provider key."""
    where = [col(Job.lease_token) == lease] if lease else []
    common: dict[str, Any] = {
        "error_kind": kind,
        "error_message": message[:1000],
        "error_http_status": http_status,
        "lease_token": None,
        "lease_until": None,
        "submit_inflight_at": None,
        **extra,
    }
    if kind in ACCOUNT_KINDS:
        if transition(s, job.id, source={source}, target=S.HELD, where=where, **common, **park()):
            repo.pause_provider(s, provider=job.provider, reason=kind, message=message)
        return None
    transition(s, job.id, source={source}, target=S.FAILED, where=where, **common)
    return None


def expire_if_due(s: Session, job: Job, now: datetime) -> bool:
    """Expire ``job`` if its deadline passed; True if it is (now) expired."""
    if job.deadline_at > now:
        return False
    return expire(s, job.id, {S(job.status)}, held_kind=job.error_kind if job.status == S.HELD else None)


def expire(s: Session, job_id: str, source: Collection[S], *, held_kind: str | None = None) -> bool:
    """Move a job to ``expired``; a held job keeps the error kind that held it (SPEC §3)."""
    return transition(
        s,
        job_id,
        source=source,
        target=S.EXPIRED,
        error_kind=held_kind or ErrorKind.DEADLINE_EXCEEDED.value,
        error_message="the job deadline passed before it finished",
        submit_inflight_at=None,
    )
