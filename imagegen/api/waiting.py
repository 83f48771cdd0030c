"""Waiting on jobs without polling: ``Prefer: wait=N``, and the re-read loop the events stream and the
OpenAI-compatible routes share.

A waiter registers with the process's ``ChangeFeed`` *before* it reads the rows, then sleeps until an
announcement names one of its jobs (or ``REREAD_S`` passes, in case one was lost), and reads again. It
holds neither a thread nor a database connection while it sleeps; reads run in the thread pool.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

from starlette.concurrency import run_in_threadpool

from imagegen.api.feed import ChangeFeed
from imagegen.jobview import job_to_dict
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import TERMINAL, JobStatus

#: The longest ``Prefer: wait`` honoured; a longer one is applied as this.
MAX_WAIT_S = 300
#: How often a waiter reads its rows again with no announcement while the feed is down.
REREAD_S = 5.0
#: ... and while it is up: an announcement is then lost only with the subscription, and a new
#: subscription wakes every waiter anyway, so this re-read is a last resort, not a polling loop.
REREAD_CONNECTED_S = 30.0
#: Where a waiter stops: the job ended, or it is held and will not move until someone acts.
SETTLED: frozenset[JobStatus] = TERMINAL | {JobStatus.HELD}

# RFC 7240: `Prefer: respond-async, wait=10` (preferences are comma-separated, parameters after `;`).
_WAIT = re.compile(r'^\s*wait\s*=\s*(?:([0-9]{1,9})|"([0-9]{1,9})")\s*(;.*)?$', re.IGNORECASE | re.ASCII)


def preferred_wait(prefer: str | None) -> int | None:
    """The seconds a ``Prefer`` header asks to wait (at most ``MAX_WAIT_S``), or None if it asks none.

    A malformed ``wait`` is ignored, as RFC 7240 asks of preferences a server cannot apply.
    """
    for preference in (prefer or "").split(","):
        match = _WAIT.match(preference)
        if match:
            return min(int(match.group(1) or match.group(2)), MAX_WAIT_S)
    return None


def settled(job: Job) -> bool:
    """Whether a waiter on ``job`` is done: it ended or is held."""
    return JobStatus(job.status) in SETTLED


def read_jobs(rt: Runtime, job_ids: Sequence[str]) -> list[Job]:
    """The rows, in order (a purged job is left out)."""
    with rt.read_session() as s:
        return repo.get_jobs(s, job_ids)


def view(rt: Runtime, job: Job, public_url: str | None) -> dict[str, Any]:
    """A single-job answer: the job JSON with its ``queue_position`` when it is queued."""
    position = None
    if job.status == JobStatus.QUEUED:
        with rt.read_session() as s:
            position = repo.queue_position(s, job)
    return job_to_dict(job, public_url=public_url, queue_position=position)


def reread_interval(feed: ChangeFeed, reread_s: float) -> float:
    """How long a waiter may sleep without an announcement before it reads its rows again."""
    return max(reread_s, REREAD_CONNECTED_S) if feed.connected.is_set() else reread_s


#: How often a sleeping waiter checks, without reading anything, whether its client left or the
#: process is stopping, and whether its re-read is due.
TICK_S = 1.0

#: ``request.is_disconnected``: whether the client went away (then nobody reads the answer).
Gone = Callable[[], Awaitable[bool]]


async def settle(
    feed: ChangeFeed,
    rt: Runtime,
    job_ids: Sequence[str],
    timeout_s: float,
    *,
    reread_s: float = REREAD_S,
    gone: Gone | None = None,
) -> list[Job]:
    """The jobs once every one is settled, or as they are when ``timeout_s`` runs out, the process stops
    or the client leaves (then nobody waits for the answer: it returns without reading)."""
    deadline = time.monotonic() + timeout_s
    with feed.watching(job_ids) as changed:
        read_at = -math.inf
        jobs: list[Job] = []
        while True:
            left = deadline - time.monotonic()
            due = time.monotonic() - read_at >= reread_interval(feed, reread_s)
            if changed.is_set() or due or left <= 0 or feed.closing:
                changed.clear()  # before the read: an announcement during it wakes the next wait
                jobs = await run_in_threadpool(read_jobs, rt, job_ids)
                read_at = time.monotonic()
                if left <= 0 or feed.closing or len(jobs) < len(job_ids) or all(settled(j) for j in jobs):
                    return jobs
            elif gone is not None and await gone():
                return jobs
            await _sleep_until(changed, min(TICK_S, max(left, 0.0)))


async def follow(
    feed: ChangeFeed, rt: Runtime, job_id: str, *, tick_s: float, reread_s: float = REREAD_S
) -> AsyncIterator[Job | None]:
    """The job after every announcement (and every re-read interval) until it ends; stops if it vanishes
    or the process is stopping.

    Yields the row each time it was read, changed or not (the caller decides what is news), and None
    when ``tick_s`` passed with nothing to read (time for a heartbeat).
    """
    with feed.watching([job_id]) as changed:
        read_at = -math.inf
        while not feed.closing:
            if changed.is_set() or time.monotonic() - read_at >= reread_interval(feed, reread_s):
                changed.clear()
                jobs = await run_in_threadpool(read_jobs, rt, [job_id])
                read_at = time.monotonic()
                if not jobs:  # purged while followed
                    return
                yield jobs[0]
                if JobStatus(jobs[0].status) in TERMINAL:
                    return
            else:
                yield None
            await _sleep_until(changed, min(tick_s, reread_s))


async def _sleep_until(event: asyncio.Event, timeout_s: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=max(timeout_s, 0.0))
