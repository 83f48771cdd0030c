"""Finalizing a finished upstream task: downloading its result files into our storage, on their own budget.

The download is its own message (``imagegen.finalize``, on the poll queue), with time limits derived
from the download budget (``IMAGEGEN_DOWNLOAD_MAX_S``), so a download the fetch policy allows is never
killed by the short limits of a status call.

1. A poll that reads "finished" records the file URLs as pending ``result`` entries (``path`` null) and
   claims ``running → finalizing`` (``claim``); it publishes one finalize message.
2. The finalize message takes the claim with a lease token (a duplicate message finds it taken),
   downloads what is pending, and marks the job ``succeeded``.
3. A failed download returns the job to ``running`` with the URLs kept and a backoff timer. The next
   poll message sees the pending entries and claims the download again **without a status call**: the
   job stays bound to the same upstream task. Definite failures (the file is gone or not an image) end
   it ``result_unavailable`` after ``IMAGEGEN_MAX_DOWNLOAD_ERRORS``, any failures after
   ``IMAGEGEN_MAX_DOWNLOAD_ATTEMPTS``; an unsafe URL ends it at once.

A finalizer that dies leaves the job ``finalizing`` with a lapsed lease; the reconciler hands it back to
``running``, and the next poll resumes the download from the kept URLs (no status call either). A finalize
message that arrives after such a hand-back (it waited in a deep poll queue) takes the job itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from config.limits import finalize_lease_s
from imagegen.constants import ERROR_MESSAGE_CHARS, clip
from imagegen.errors import DownloadFailed, DownloadFailure, ErrorKind
from imagegen.jobs.attempts import log_call
from imagegen.jobs.downloads import download_pending, has_pending, pending_entries
from imagegen.jobs.endings import follow_up
from imagegen.messages import Step, poll_step
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import ATTEMPTS, JOBS, Job
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition, update_in
from imagegen.timing.backoff import retry_delay
from imagegen.timing.timers import EARLY_SLACK, schedule

#: The attempt-log kind of a failed result download.
DOWNLOAD = "download"


def claim(
    rt: Runtime,
    s: Session,
    job_id: str,
    *,
    urls: Sequence[str] | None = None,
    where: Iterable[ColumnElement[bool]] = (),
    **values: Any,
) -> bool:
    """``running → finalizing`` (of racing polls and webhooks, one wins). ``urls``: the files a status call
    just reported (a fresh finished task: the download budget starts again); None resumes the pending ones."""
    fresh: dict[str, Any] = {} if urls is None else {"result": pending_entries(urls), "download_errors": 0}
    # Until a finalizer takes the claim, the lease is only the message's dispatch grace: a lost finalize
    # message (a flushed Redis, a killed worker) is handed back by the reconciler within it. A late message
    # then finds the job polled again; whichever finalize message comes first takes the claim.
    return transition(
        s,
        job_id,
        source={S.RUNNING},
        target=S.FINALIZING,
        where=where,
        lease_token=None,
        lease_until=rt.now() + timedelta(seconds=rt.settings.timers.dispatch_grace_s),
        dispatch_until=None,
        **fresh,
        **values,
    )


def finalize_job(rt: Runtime, job_id: str) -> list[Step]:
    """Serve one ``imagegen.finalize`` message; returns the messages to publish next."""
    job, step = finalize(rt, job_id)
    return ([step] if step else []) + follow_up(rt, job, step)


def finalize(rt: Runtime, job_id: str) -> tuple[Job | None, Step | None]:
    """Download a ``finalizing`` job's pending files and mark it succeeded (or schedule the retry).

    Runs outside any transaction while downloading, so a slow file never holds the database.
    """
    token = str(uuid.uuid4())
    with rt.session() as s:
        job = repo.get_job(s, job_id)
        status = job.status if job is not None else None
        if job is not None and status == S.RUNNING and has_pending(job.result) and job.upstream_task_id:
            # Handed back while this message waited in a deep poll queue: the poll sent meanwhile would
            # only claim again and put a new finalize message at the back of that same queue, for ever.
            due = sa.or_(JOBS.c.next_attempt_at.is_(None), JOBS.c.next_attempt_at <= rt.now() + EARLY_SLACK)
            if job.deadline_at <= rt.now() or not claim(rt, s, job_id, where=[due]):
                return None, None  # expiring (the poll or reconciler does it), or in its download backoff
            status = S.FINALIZING
        if job is None or status != S.FINALIZING:
            return None, None  # stale message: the row says what is true
        lease_until = rt.now() + timedelta(seconds=finalize_lease_s(rt.settings))
        free = [JOBS.c.lease_token.is_(None)]
        if not update_in(s, job_id, status=S.FINALIZING, where=free, lease_token=token, lease_until=lease_until):
            return None, None  # a duplicate message: another finalizer holds the claim
    started = time.monotonic()
    try:
        entries = download_pending(rt, job_id, job.result or [], rt.settings.http.download_max_s)
    except DownloadFailed as failed:
        return job, _failed(rt, job, token, failed.failure, failed.entries, started)
    with rt.session() as s:
        transition(
            s,
            job_id,
            source={S.FINALIZING},
            target=S.SUCCEEDED,
            where=[JOBS.c.lease_token == token],
            result=entries,
            error_kind=None,
            error_message=None,
            error_http_status=None,
        )
    return job, None


def finalize_interrupted(rt: Runtime, job_id: str) -> list[Step]:
    """The finalize message ran into its soft time limit: count it as a transient download failure and
    hand the job back to the download retry path (called by the task shell, which catches the limit)."""
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    if job is None or job.status != S.FINALIZING or job.lease_token is None:
        return []  # it ended (or was handed back) before the limit struck
    held_s = max(0.0, (rt.now() - job.updated_at).total_seconds())
    failure = DownloadFailure("result download failed: it exceeded the finalize task's time limit")
    step = _failed(rt, job, job.lease_token, failure, job.result or [], time.monotonic() - held_s)
    return [step] if step else []


def _failed(
    rt: Runtime, job: Job, token: str, failure: DownloadFailure, entries: list[dict[str, Any]], started: float
) -> Step | None:
    """Record a failed download attempt; end the job or schedule the next attempt (no status call)."""
    settings = rt.settings
    mine = [JOBS.c.lease_token == token]
    errors = job.download_errors + 1
    with rt.session() as s:
        log_call(
            s,
            job,
            DOWNLOAD,
            started,
            upstream_task_id=job.upstream_task_id,
            http_status=failure.http_status,
            error_kind=failure.kind.value,
            message=failure.message,
        )
        definite = _definite_failures(s, job) if failure.definite else 0
        if failure.refused or definite >= settings.budgets.download_errors:
            counted = "" if failure.refused else f" ({definite} definite failures)"
            kind = ErrorKind.UPSTREAM_UNAVAILABLE if failure.refused else ErrorKind.RESULT_UNAVAILABLE
            _end(s, job, mine, kind, failure.message + counted, failure.http_status, entries, errors)
            return None
        if errors >= settings.budgets.download_attempts:
            message = f"{failure.message} ({errors} failed download attempts)"
            _end(s, job, mine, ErrorKind.RESULT_UNAVAILABLE, message, failure.http_status, entries, errors)
            return None
        # Full jitter, but never less than the base: three definite failures must span a little time.
        delay = retry_delay(errors, settings.backoff, rt.rng, floor=True)
        timer = schedule(rt.now(), delay, settings)
        back = transition(
            s,
            job.id,
            source={S.FINALIZING},
            target=S.RUNNING,
            where=mine,
            result=entries,
            download_errors=errors,
            lease_token=None,
            lease_until=None,
            last_error_kind=failure.kind.value,
            last_error_message=clip(failure.message),
            last_error_http_status=failure.http_status,
            **timer.values,
        )
    return poll_step(job.id, timer.countdown) if back and timer.countdown is not None else None


def _end(
    s: Session,
    job: Job,
    mine: list[ColumnElement[bool]],
    kind: ErrorKind,
    message: str,
    http_status: int | None,
    entries: list[dict[str, Any]],
    errors: int,
) -> None:
    transition(
        s,
        job.id,
        source={S.FINALIZING},
        target=S.FAILED,
        where=mine,
        result=entries,  # the URLs stay visible: what could not be fetched
        download_errors=errors,
        error_kind=kind.value,
        error_message=clip(message, ERROR_MESSAGE_CHARS),
        error_http_status=http_status,
    )


def _definite_failures(s: Session, job: Job) -> int:
    """Definite download failures of this job's current upstream task, from the attempt log."""
    stmt = sa.select(sa.func.count()).where(
        ATTEMPTS.c.job_id == job.id,
        ATTEMPTS.c.kind == DOWNLOAD,
        ATTEMPTS.c.error_kind == ErrorKind.RESULT_UNAVAILABLE.value,
        ATTEMPTS.c.upstream_task_id == job.upstream_task_id,
    )
    return int(s.execute(stmt).scalar_one())
