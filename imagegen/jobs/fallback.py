"""Fallback routes at run time: the next provider of a job's route, and moving the job onto it."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from imagegen.constants import clip
from imagegen.errors import ACCOUNT_KINDS, RETRYABLE_KINDS, RequestInvalid
from imagegen.messages import Step, submit_step
from imagegen.request import ImageRequest
from imagegen.routes import NoMapping, hop_request
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition, update_in

log = logging.getLogger(__name__)


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
    moved_to: dict[str, Any] = {
        "provider": target,
        "model": request["model"],
        "request": request,
        "wait_reason": None,
        "rate_reserved": False,  # a rate slot is only good on the key that reserved it
        "last_error_kind": kind,
        "last_error_message": clip(f"{job.provider}: {message}"),
        "next_attempt_at": now,
        "dispatch_until": now + timedelta(seconds=rt.settings.timers.dispatch_grace_s),
    }
    if source == S.QUEUED:
        moved = update_in(s, job.id, status=S.QUEUED, where=where, **moved_to)
    else:
        budgets = ("rate_limited_submits", "unavailable_submits")
        moved = transition(
            s,
            job.id,
            source={source},
            target=S.QUEUED,
            where=where,
            lease_token=None,
            lease_until=None,
            submit_inflight_at=None,
            rate_limited_submits=0,
            unavailable_submits=0,  # fresh budgets on the new key
            **moved_to,
            **{k: v for k, v in extra.items() if k not in budgets},
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
