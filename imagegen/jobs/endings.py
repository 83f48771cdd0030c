"""Ending or holding a job: the endings submits, polls and the reconciler share, and what follows one."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from imagegen.constants import ERROR_MESSAGE_CHARS, clip
from imagegen.errors import ACCOUNT_KINDS, ErrorKind
from imagegen.jobs import slots
from imagegen.jobs.fallback import FALLBACK_KINDS, switch_provider
from imagegen.messages import Step
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import JOBS, Job
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition
from imagegen.timing.timers import park
from imagegen.webhooks import batches, outbound

log = logging.getLogger(__name__)


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
    """Fail the job for ``kind``, or for account errors hold it and pause its provider key.

    A submit that failed for good on a paused key or a spent retry budget moves on to the next provider
    of the job's ``fallback`` route instead (the 402 still pauses the first key).
    """
    where = [JOBS.c.lease_token == lease] if lease else []
    if source == S.SUBMITTING and kind in FALLBACK_KINDS:
        if kind in ACCOUNT_KINDS:
            repo.pause_provider(s, provider=job.provider, reason=kind, message=message)
        step = switch_provider(rt, s, job, source, kind, message, where=where, **extra)
        if step is not None:
            return step
    common: dict[str, Any] = {
        "error_kind": kind,
        "error_message": clip(message, ERROR_MESSAGE_CHARS),
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
    return transition(s, job.id, source={S(job.status)}, target=S.EXPIRED, **expiry_values(held=job.status == S.HELD))


def expiry_values(*, held: bool) -> dict[str, Any]:
    """The columns of a job whose deadline passed: a held job keeps the error kind that held it (the
    README's lifecycle), every other one ends ``deadline_exceeded``."""
    if held:
        return {"error_message": "the job deadline passed while it was held"}
    return {
        "error_kind": ErrorKind.DEADLINE_EXCEEDED.value,
        "error_message": "the job deadline passed before it finished",
        "submit_inflight_at": None,
    }


def follow_up(rt: Runtime, served: Job | None, next_step: Step | None = None) -> list[Step]:
    """After serving a message for ``served`` (as read at the start) whose changes have committed, with
    ``next_step`` the message the handler sends next: if the job left the in-flight set, parked jobs of its
    provider get the freed slots; if it has a caller callback, its notification is claimed right away in
    case it just ended (the claim is a no-op otherwise); if its batch has a callback and the job may have
    ended, so is the batch's, in case it was the batch's last."""
    released = slots.release_after(rt, served)
    if served is None:
        return released
    steps = list(released)
    if served.callback_url:  # no callback_url: skip the claim (a hot path; the reconciler would find it anyway)
        step = outbound.claim(rt, served.id)
        steps += [step] if step else []
    # A handler that sends this job's next message left it active: no batch can have finished with it.
    continues = next_step is not None and next_step.job_id == served.id
    if served.batch_callback and served.batch_id and not continues:
        step = batches.claim(rt, served.batch_id)
        steps += [step] if step else []
    return steps
