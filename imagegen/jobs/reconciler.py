"""The reconciler (``imagegen.reconcile`` on beat): the durable scheduler behind every timer.

Each run, in its own short transactions, it
1. expires jobs past their deadline (queued, held, running, and submitting whose lease ran out);
2. recovers expired submit leases (requeue, or ``submit_outcome_unknown`` under ``at_most_once`` and past
   the ``IMAGEGEN_MAX_SUBMITS_UNKNOWN`` budget);
3. hands jobs whose finalizer died back to polling (each death a failed download attempt);
4. releases due work: queued and running jobs whose time has come and that have no message in flight
   (parked long waits, lost messages, a flushed Redis, a killed worker), judged per queue (recovery.py),
   and jobs parked for an in-flight slot into the slots now free (``slots``);
5. moves queued jobs parked on a paused key down their fallback route, when it has a next hop;
6. claims due notifications: ended jobs' and finished batches' whose claim was missed, and pending ones
   whose message was lost.
Every claim is a compare-and-set ``UPDATE … RETURNING``, so several beats at once never release a job twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from imagegen.errors import ErrorKind
from imagegen.jobs import pauses, recovery, slots
from imagegen.jobs.endings import expiry_values
from imagegen.messages import Step, poll_step, submit_step
from imagegen.runtime import Runtime
from imagegen.store.models import Job, ProviderState
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import claim_in, transition_many
from imagegen.webhooks import batches as batch_notices
from imagegen.webhooks import outbound as notifications


@dataclass
class ReconcileReport:
    """What one run did (logged, and returned by the task for Flower)."""

    expired: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    refinalize: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """Counts per action."""
        return {
            "expired": len(self.expired),
            "requeued": len(self.requeued),
            "unknown": len(self.unknown),
            "refinalize": len(self.refinalize),
            "released": len(self.steps),
        }


def reconcile(rt: Runtime) -> ReconcileReport:
    """One pass; the caller publishes ``report.steps`` after this returns (all changes are committed)."""
    report = ReconcileReport()
    now = rt.now()
    limit = rt.settings.timers.release_batch
    with rt.session() as s:
        report.expired += _expire(s, now, limit)
    with rt.session() as s:
        report.requeued, report.unknown = _recover_submits(rt, s, now, limit)
    with rt.session() as s:
        report.expired += _fail_dead_downloads(rt, s, now, limit)
        report.refinalize = transition_many(
            s,
            source={S.FINALIZING},
            target=S.RUNNING,
            where=[col(Job.lease_until) < now],
            limit=limit,
            # A finalizer that took the claim died mid-download: a failed download attempt (a file that
            # kills every finalizer would otherwise cycle until the deadline). A lost message costs nothing.
            download_errors=sa.case(
                (col(Job.lease_token).is_not(None), col(Job.download_errors) + 1), else_=col(Job.download_errors)
            ),
            lease_token=None,
            lease_until=None,
            next_attempt_at=now,
            dispatch_until=None,
        )
    with rt.session() as s:
        report.steps = _release_due(rt, s, now, limit)
    with rt.session() as s:
        report.steps += slots.release_all(rt, s, now)
        report.steps += recovery.move_paused_fallbacks(rt, s, now, limit)
    with rt.session() as s:
        report.steps += pauses.send_probes(rt, s, now)
    report.steps += notifications.claim_due(rt, now, limit)
    report.steps += batch_notices.claim_due(rt, now, limit)
    return report


def _expire(s: Session, now: datetime, limit: int) -> list[str]:
    past = [col(Job.deadline_at) <= now]
    expired = transition_many(
        s,
        source={S.HELD},
        target=S.EXPIRED,
        where=past,
        limit=limit,
        **expiry_values(held=True),
    )
    common = expiry_values(held=False)
    expired += transition_many(s, source={S.QUEUED, S.RUNNING}, target=S.EXPIRED, where=past, limit=limit, **common)
    # A submit in progress keeps its lease: expiring it mid-POST would orphan a paid generation.
    expired += transition_many(
        s,
        source={S.SUBMITTING},
        target=S.EXPIRED,
        where=[*past, col(Job.lease_until) < now],
        limit=limit,
        **common,
    )
    return expired


def _fail_dead_downloads(rt: Runtime, s: Session, now: datetime, limit: int) -> list[str]:
    """Finalizers died mid-download of this job's files ``IMAGEGEN_MAX_DOWNLOAD_ATTEMPTS`` times in all."""
    attempts = rt.settings.budgets.download_attempts
    return transition_many(
        s,
        source={S.FINALIZING},
        target=S.FAILED,
        where=[
            col(Job.lease_until) < now,
            col(Job.lease_token).is_not(None),
            col(Job.download_errors) + 1 >= attempts,
        ],
        limit=limit,
        download_errors=col(Job.download_errors) + 1,
        error_kind=ErrorKind.RESULT_UNAVAILABLE.value,
        error_message=f"result download failed: the finalizer died during it ({attempts} failed download attempts)",
    )


def _recover_submits(rt: Runtime, s: Session, now: datetime, limit: int) -> tuple[list[str], list[str]]:
    lapsed = col(Job.lease_until) < now
    clear = {"lease_token": None, "lease_until": None, "submit_inflight_at": None}
    # The worker died before its POST: nothing was sent, so a resubmit is safe under either policy.
    requeued = transition_many(
        s,
        source={S.SUBMITTING},
        target=S.QUEUED,
        where=[lapsed, col(Job.submit_inflight_at).is_(None)],
        limit=limit,
        next_attempt_at=now,
        dispatch_until=None,
        **clear,
    )
    # The worker died during its POST: the upstream may have a paid task for it. That is an unknown
    # outcome like a read timeout, on the same budget, so a request that kills every worker that
    # sends it is POSTed at most IMAGEGEN_MAX_SUBMITS_UNKNOWN more times.
    spent = col(Job.unknown_submits) + 1
    settings = rt.settings
    over = [lapsed]
    if settings.imagegen_submit_policy != "at_most_once":
        over.append(col(Job.unknown_submits) >= settings.budgets.unknown_submits)
    unknown = transition_many(
        s,
        source={S.SUBMITTING},
        target=S.FAILED,
        where=over,
        limit=limit,
        error_kind=ErrorKind.SUBMIT_OUTCOME_UNKNOWN.value,
        error_message=(
            "the worker died during the upstream submit; it may or may not have been accepted "
            f"(policy {settings.imagegen_submit_policy}, IMAGEGEN_MAX_SUBMITS_UNKNOWN "
            f"{settings.budgets.unknown_submits})"
        ),
        unknown_submits=spent,
        **clear,
    )
    if settings.imagegen_submit_policy != "at_most_once":
        requeued += transition_many(
            s,
            source={S.SUBMITTING},
            target=S.QUEUED,
            where=[lapsed],
            limit=limit,
            next_attempt_at=now,
            dispatch_until=None,
            unknown_submits=spent,
            last_error_kind=ErrorKind.SUBMIT_OUTCOME_UNKNOWN.value,
            last_error_message="a worker died during the submit; submitting again (at_least_once)",
            **clear,
        )
    return requeued, unknown


def _release_due(rt: Runtime, s: Session, now: datetime, limit: int) -> list[Step]:
    """Publish due work: parked waits always; a message presumed lost (its grace passed) while its own
    queue is short, or whatever the backlog once it is long lost (see recovery.py)."""
    grace = now + timedelta(seconds=rt.settings.timers.dispatch_grace_s)
    parked = col(Job.dispatch_until).is_(None)
    due = col(Job.next_attempt_at) <= now
    paused = sa.select(col(ProviderState.provider)).where(col(ProviderState.paused).is_(True))
    steps: list[Step] = []
    submit_cond = sa.or_(parked, recovery.lost_submits(rt, now))
    ids = claim_in(
        s,
        status={S.QUEUED},
        where=[due, submit_cond, col(Job.provider).not_in(paused)],
        limit=limit,
        dispatch_until=grace,
    )
    if ids:
        rows = s.execute(sa.select(col(Job.id), col(Job.priority), col(Job.provider)).where(col(Job.id).in_(ids)))
        steps += [submit_step(job_id, priority, provider) for job_id, priority, provider in rows.tuples()]
    poll_cond = sa.or_(parked, recovery.lost_polls(rt, now))
    ids = claim_in(s, status={S.RUNNING}, where=[due, poll_cond], limit=limit, dispatch_until=grace)
    steps += [poll_step(job_id) for job_id in ids]
    return steps
