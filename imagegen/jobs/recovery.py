"""Lost-message recovery judged per queue, and parked jobs on a paused key moved down their fallback route.

A message is presumed lost once its dispatch grace (``IMAGEGEN_DISPATCH_GRACE_S``) has passed. While its
own queue is long it is most likely still waiting there, and re-sending every job of a deep backlog each
grace period would flood the broker with duplicates, so a lost message is re-sent at once only while
the queue it went to is short; a deep batch queue no longer holds back the recovery of an interactive
submit. Past ``LOST_GRACES`` grace periods a message is re-sent whatever the backlog (a duplicate is
harmless: every handler claims its job with a compare-and-set first).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from imagegen.constants import POLL_QUEUE, PRIORITIES, PROVIDERS
from imagegen.errors import ErrorKind
from imagegen.jobs.fallback import next_provider, switch_provider
from imagegen.messages import Step, submit_step
from imagegen.runtime import Runtime
from imagegen.store.models import JOBS, Job, ProviderState
from imagegen.store.softredis import queue_depths
from imagegen.store.transitions import JobStatus as S

#: Grace periods after which a message is re-sent even while its queue is deep.
LOST_GRACES = 3


def submit_routes() -> dict[str, list[tuple[str, str]]]:
    """Each submit queue and the (provider, priority) pairs whose submits go to it (from ``submit_step``)."""
    routes: dict[str, list[tuple[str, str]]] = {}
    for provider in PROVIDERS:
        for priority in PRIORITIES:
            routes.setdefault(submit_step("", priority, provider).queue, []).append((provider, priority))
    return routes


def depths(rt: Runtime, queues: list[str]) -> dict[str, int]:
    """Messages waiting per queue (0 when Redis cannot say: then lost messages are plausible)."""
    try:
        return queue_depths(rt.redis, queues)
    except redis.RedisError:
        return dict.fromkeys(queues, 0)


def _long_lost(rt: Runtime, now: datetime) -> ColumnElement[bool]:
    grace = timedelta(seconds=rt.settings.timers.dispatch_grace_s)
    # dispatch_until is the send time plus one grace: past it by (LOST_GRACES - 1) more, it is long lost.
    return col(Job.dispatch_until) < now - grace * (LOST_GRACES - 1)


def lost_submits(rt: Runtime, now: datetime) -> ColumnElement[bool]:
    """Queued jobs whose submit message is presumed lost and should be re-sent now."""
    routes = submit_routes()
    depth = depths(rt, sorted(routes))
    short = rt.settings.timers.release_batch
    pairs = [pair for queue, members in routes.items() if depth[queue] < short for pair in members]
    lost = col(Job.dispatch_until) < now
    on_short = sa.or_(*(sa.and_(col(Job.provider) == p, col(Job.priority) == pr) for p, pr in pairs))
    return sa.and_(lost, sa.or_(on_short, _long_lost(rt, now))) if pairs else _long_lost(rt, now)


def lost_polls(rt: Runtime, now: datetime) -> ColumnElement[bool]:
    """Running jobs whose poll message is presumed lost and should be re-sent now."""
    if depths(rt, [POLL_QUEUE])[POLL_QUEUE] < rt.settings.timers.release_batch:
        return col(Job.dispatch_until) < now
    return _long_lost(rt, now)


def _paused(s: Session) -> list[tuple[str, str | None]]:
    stmt = sa.select(col(ProviderState.provider), col(ProviderState.reason)).where(col(ProviderState.paused).is_(True))
    return [(provider, reason) for provider, reason in s.execute(stmt).tuples()]


def _has_next_hop(provider: str) -> ColumnElement[bool]:
    """In SQL: the job is on ``provider`` and its route ``[provider, *fallback]`` continues after it."""
    request = col(Job.request)
    first = sa.func.coalesce(request["provider"].as_string(), "apidot")
    hops = [first, *(request[("fallback", i)].as_string() for i in range(len(PROVIDERS)))]
    return sa.or_(*(sa.and_(here == provider, after.is_not(None)) for here, after in pairwise(hops)))


def move_paused_fallbacks(rt: Runtime, s: Session, now: datetime, limit: int) -> list[Step]:
    """Queued jobs parked on a paused key that have a next fallback hop move to it (oldest first).

    A job is parked on a paused key without any message in flight (the reconciler releases no submit
    for a paused provider), so without this step it would wait for ``imagegen resume`` or its deadline
    although its route names a provider that could serve it.
    """
    steps: list[Step] = []
    for provider, reason in _paused(s):
        if len(steps) >= limit:
            break
        jobs = s.scalars(
            sa.select(Job)
            .where(col(Job.status) == S.QUEUED.value, col(Job.provider) == provider, _has_next_hop(provider))
            .order_by(col(Job.created_at))
            .limit(limit - len(steps))
            .execution_options(populate_existing=True)  # a job moved by the previous key's pass is re-read
        ).all()
        for job in jobs:
            if next_provider(job) is None:
                continue
            kind = reason or ErrorKind.INSUFFICIENT_CREDITS.value
            # The provider re-check makes a racing reconciler's second move of the same job a no-op.
            mine = [JOBS.c.provider == provider]
            step = switch_provider(rt, s, job, S.QUEUED, kind, f"{provider} key is paused", where=mine)
            if step is not None:
                steps.append(step)
    return steps
