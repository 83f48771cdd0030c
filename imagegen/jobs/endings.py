"""Ending or holding a job: the shared endings of submits, polls and the reconciler."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from imagegen.errors import ACCOUNT_KINDS, RETRYABLE_KINDS, ErrorKind, RequestInvalid
from imagegen.messages import Step, submit_step
from imagegen.request import ImageRequest
from imagegen.routes import NoMapping, hop_request
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import JOBS, Job
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition, update_in
from imagegen.timing.timers import park

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


#: Failures that send a job down its fallback route: the key is unusable, or the retry budget is spent.
FALLBACK_KINDS = ACCOUNT_KINDS | RETRYABLE_KINDS


def next_provider(job: Job) -> str | None:
    """The provider after the job's current one in its route ``[provider, *fallback]``, if any."""
    route = _route(job)
    if job.provider not in route:
        return None
    index = route.index(job.provider)
    return route[index + 1] if index + 1 < len(route) else None


def _route(job: Job) -> list[str]:
    return [job.request.get("provider", "apidot"), *(job.request.get("fallback") or [])]


def next_hop(job: Job) -> tuple[str, dict[str, Any]] | None:
    """The next provider of the route that can carry the job's request, with the request mapped for it.

    Intake refuses a route with a hop that cannot (``imagegen.routes``); a row queued before that rule
    (or under other rules) skips such a hop, with a warning, rather than send it the wrong request.
    """
    target = next_provider(job)
    # The stored request is in the terms of its own ``provider`` (the first hop, on rows switched
    # before requests were mapped): map from those.
    request: dict[str, Any] = dict(job.request)
    while target is not None:
        try:
            mapped = hop_request(request, target)
            ImageRequest.from_dict(mapped, allow_private_urls=True)
            return target, mapped
        except (NoMapping, RequestInvalid) as exc:
            log.warning("job %s: fallback to %s skipped: %s", job.id, target, exc)
        route = _route(job)
        target = route[route.index(target) + 1] if route.index(target) + 1 < len(route) else None
    return None


def switch_provider(
    rt: Runtime, s: Session, job: Job, source: S, kind: str, message: str, *, where: Any = (), **extra: Any
) -> Step | None:
    """Move a job to the next provider of its route (queued, due now, fresh budgets); logged as an attempt.

    The stored request becomes the one for that hop (its size, model... in that provider's terms, and
    the rest of the route as its ``fallback``), so the submit sends what was validated at intake.
    """
    hop = next_hop(job)
    if hop is None:
        return None
    target, request = hop
    now = rt.now()
    moved = (
        transition(
            s,
            job.id,
            source={source},
            target=S.QUEUED,
            where=where,
            provider=target,
            model=request["model"],
            request=request,
            lease_token=None,
            lease_until=None,
            submit_inflight_at=None,
            rate_limited_submits=0,
            unavailable_submits=0,
            wait_reason=None,
            rate_reserved=False,  # a rate slot is only good on the key that reserved it
            last_error_kind=kind,
            last_error_message=f"{job.provider}: {message}"[:500],
            next_attempt_at=now,
            dispatch_until=now + timedelta(seconds=rt.settings.imagegen_dispatch_grace_s),
            **{k: v for k, v in extra.items() if k not in ("rate_limited_submits", "unavailable_submits")},
        )
        if source != S.QUEUED
        else update_in(
            s,
            job.id,
            status=S.QUEUED,
            where=where,
            provider=target,
            model=request["model"],
            request=request,
            wait_reason=None,
            rate_reserved=False,
            last_error_kind=kind,
            last_error_message=f"{job.provider}: {message}"[:500],
            next_attempt_at=now,
            dispatch_until=now + timedelta(seconds=rt.settings.imagegen_dispatch_grace_s),
        )
    )
    if not moved:
        return None
    repo.record_attempt(
        s,
        job_id=job.id,
        provider=job.provider,
        kind="fallback",
        duration_ms=0,
        error_kind=kind,
        message=f"{job.provider} → {target}: {message}",
    )
    return submit_step(job.id, job.priority, target)


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
