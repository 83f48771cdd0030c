"""Operator actions over many jobs: statistics, bulk requeue and purge (Celery-free; the CLI drives them).

- ``stats``: counts, throughput, latency percentiles, calls per job and credits over a time window.
- ``retry_many``: failed/expired/canceled jobs back to ``queued`` in bulk, through
  ``lifecycle.transition_many`` (one compare-and-set per group, never a read followed by a write);
  returns the submit steps to publish.
- ``purge``: delete terminal jobs finished before a cutoff, with their attempt and delivery rows and
  their locally stored result files. The ``DELETE`` itself re-checks status and age, so a job requeued
  concurrently is never deleted.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from imagegen.jobview import iso
from imagegen.messages import Step, submit_step
from imagegen.ops import pricing
from imagegen.ops.actions import requeue_values
from imagegen.runtime import Runtime
from imagegen.store.models import Attempt, Delivery, Job
from imagegen.store.transitions import ACTIVE, RETRYABLE_FROM, TERMINAL, JobStatus, transition_many

#: Rows per statement: keeps ``IN (...)`` lists far below SQLite's bound-parameter limit.
CHUNK = 500

# --- durations ----------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+\Z")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``30s``, ``30m``, ``2h``, ``30d``, ``2w`` or combinations such as ``1h30m``.

    Raises ``ValueError`` with a message fit to show after the flag's name.
    """
    cleaned = text.strip().lower().replace(" ", "")
    if not _DURATION.match(cleaned):
        raise ValueError(f"{text!r} is not a duration (use a number and a unit s, m, h, d or w, e.g. 30m, 2h, 30d)")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if not math.isfinite(seconds) or seconds > 100 * 365 * 86_400:
        raise ValueError(f"{text!r} is too long")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """A compact spelling of a window, e.g. ``24h``, ``90m``, ``30d``, ``45s``."""
    seconds = delta.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# --- stats --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    """p50/p95 (seconds) of a set of durations; ``None`` when the set is empty."""

    count: int
    p50: float | None
    p95: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Percentiles:
        """Percentiles by linear interpolation between the closest ranks (numpy's default)."""
        ordered = sorted(values)
        return cls(len(ordered), percentile(ordered, 0.50), percentile(ordered, 0.95))


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted values, interpolated; ``None`` for no values."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Stats:
    """What happened in a window ``[since, until]``, optionally for one provider.

    ``created_*``: jobs created in the window, by their status now. ``active``: every job not yet
    ended (whatever its age). ``finished_*``, rates, durations, per-job means and credits: jobs that
    ended in the window.
    """

    since: datetime
    until: datetime
    provider: str | None
    created_by_status: dict[str, int]
    active_by_status: dict[str, int]
    held_by_error_kind: dict[str, int]
    finished_by_status: dict[str, int]
    finished_by_error_kind: dict[str, int]
    total_seconds: Percentiles
    upstream_seconds: Percentiles
    mean_submit_attempts: float | None
    mean_polls: float | None
    credits_by_tier: dict[str, int] = field(default_factory=dict)

    @property
    def minutes(self) -> float:
        """Length of the window in minutes."""
        return max((self.until - self.since).total_seconds() / 60.0, 1e-9)

    @property
    def finished(self) -> int:
        """Jobs that ended in the window."""
        return sum(self.finished_by_status.values())

    @property
    def finished_per_minute(self) -> float:
        """Jobs ended per minute, averaged over the window."""
        return self.finished / self.minutes

    @property
    def succeeded_per_minute(self) -> float:
        """Jobs succeeded per minute, averaged over the window."""
        return self.finished_by_status.get(JobStatus.SUCCEEDED.value, 0) / self.minutes

    @property
    def credits(self) -> int:
        """Credits spent by the price table (succeeded APIDot jobs)."""
        return sum(self.credits_by_tier.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``imagegen stats --json``."""
        return {
            "window": {"since": iso(self.since), "until": iso(self.until), "minutes": round(self.minutes, 3)},
            "provider": self.provider,
            "created": {"total": sum(self.created_by_status.values()), "by_status": self.created_by_status},
            "active": {"by_status": self.active_by_status, "held_by_error_kind": self.held_by_error_kind},
            "finished": {
                "total": self.finished,
                "by_status": self.finished_by_status,
                "by_error_kind": self.finished_by_error_kind,
                "per_minute": round(self.finished_per_minute, 4),
                "succeeded_per_minute": round(self.succeeded_per_minute, 4),
            },
            "durations_s": {
                "created_to_finished": asdict(self.total_seconds),
                "submitted_to_finished": asdict(self.upstream_seconds),
            },
            "per_job": {"submit_attempts": self.mean_submit_attempts, "polls": self.mean_polls},
            "credits": {"total": self.credits, "by_tier": self.credits_by_tier},
        }


def stats(rt: Runtime, *, since: timedelta, provider: str | None = None, now: datetime | None = None) -> Stats:
    """Statistics over the last ``since`` (see ``Stats`` for which jobs each figure covers)."""
    until = now or rt.now()
    start = until - since
    mine: list[ColumnElement[bool]] = [col(Job.provider) == provider] if provider else []
    ended = [col(Job.finished_at) >= start, col(Job.finished_at) <= until, *mine]
    succeeded = [*ended, col(Job.status) == JobStatus.SUCCEEDED.value]
    with rt.session() as s:
        created = _count_by(s, col(Job.status), [col(Job.created_at) >= start, col(Job.created_at) <= until, *mine])
        active = _count_by(s, col(Job.status), [col(Job.status).in_([a.value for a in ACTIVE]), *mine])
        held = _count_by(s, col(Job.error_kind), [col(Job.status) == JobStatus.HELD.value, *mine])
        finished = _count_by(s, col(Job.status), ended)
        kinds = _count_by(s, col(Job.error_kind), [*ended, col(Job.error_kind).is_not(None)])
        means = s.execute(
            sa.select(sa.func.avg(col(Job.submit_attempts)), sa.func.avg(col(Job.polls))).where(*ended)
        ).one()
        times = s.execute(
            sa.select(col(Job.created_at), col(Job.submitted_at), col(Job.finished_at)).where(*succeeded)
        ).all()
        tiers = _credit_tiers(s, succeeded) if provider in (None, pricing.PRICED_PROVIDER) else {}
    return Stats(
        since=start,
        until=until,
        provider=provider,
        created_by_status=created,
        active_by_status=active,
        held_by_error_kind=held,
        finished_by_status=finished,
        finished_by_error_kind=kinds,
        total_seconds=Percentiles.of((f - c).total_seconds() for c, _, f in times if f is not None),
        upstream_seconds=Percentiles.of(
            (f - sub).total_seconds() for _, sub, f in times if f is not None and sub is not None
        ),
        mean_submit_attempts=_rounded(means[0]),
        mean_polls=_rounded(means[1]),
        credits_by_tier=tiers,
    )


def _count_by(s: Session, column: Any, where: Sequence[ColumnElement[bool]]) -> dict[str, int]:
    rows = s.execute(sa.select(column, sa.func.count()).where(*where).group_by(column)).all()
    return {str(key): int(n) for key, n in sorted(rows, key=lambda r: str(r[0])) if key is not None}


def _credit_tiers(s: Session, succeeded: Sequence[ColumnElement[bool]]) -> dict[str, int]:
    """Credits per ``quality/resolution`` tier, grouped in SQL (no request bodies are loaded)."""
    quality = col(Job.request)["quality"].as_string()
    resolution = col(Job.request)["resolution"].as_string()
    rows = s.execute(
        sa.select(quality, resolution, sa.func.count())
        .where(*succeeded, col(Job.provider) == pricing.PRICED_PROVIDER)
        .group_by(quality, resolution)
    ).all()
    out: dict[str, int] = defaultdict(int)
    for q, r, n in rows:
        priced_q, priced_r = pricing.tier(q, r)
        out[f"{priced_q}/{priced_r}"] += pricing.CREDITS[priced_q][priced_r] * int(n)
    return dict(sorted(out.items()))


def _rounded(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


# --- bulk requeue -------------------------------------------------------------------------------


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
    with rt.session() as s:
        rows = s.execute(
            sa.select(col(Job.id), col(Job.priority), col(Job.provider), deadline)
            .where(*where)
            .order_by(col(Job.finished_at), col(Job.id))
            .limit(limit)
        ).all()
        # One CAS per (deadline, chunk): each job keeps its own requested deadline, as admin.retry does.
        groups: dict[float, list[str]] = defaultdict(list)
        for job_id, _, _, deadline_s in rows:
            groups[float(deadline_s or settings.imagegen_default_deadline_s)].append(job_id)
        moved: list[str] = []
        for deadline_s, ids in groups.items():
            values = requeue_values(now, deadline_s, settings.imagegen_dispatch_grace_s)
            for chunk in _chunks(ids):
                moved += transition_many(
                    s, source={wanted}, target=JobStatus.QUEUED, where=[col(Job.id).in_(chunk), *where], **values
                )
    order = {row[0]: index for index, row in enumerate(rows)}
    routes = {job_id: (priority, prov) for job_id, priority, prov, _ in rows}
    return [submit_step(job_id, *routes[job_id]) for job_id in sorted(moved, key=order.__getitem__)]


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- purge --------------------------------------------------------------------------------------


def purgeable_statuses(spec: str) -> frozenset[JobStatus]:
    """``terminal`` (every ended status) or a comma-separated list of terminal statuses."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("is empty (use terminal, or any of succeeded, failed, expired, canceled)")
    out: set[JobStatus] = set()
    for name in names:
        if name == "terminal":
            out |= TERMINAL
            continue
        try:
            status = JobStatus(name)
        except ValueError:
            status = None
        if status not in TERMINAL:
            raise ValueError(f"{name!r} is not a terminal status (use terminal, succeeded, failed, expired, canceled)")
        assert status is not None
        out.add(status)
    return frozenset(out)


@dataclass(frozen=True)
class PurgeResult:
    """What a purge deleted (or, with ``dry_run``, would delete)."""

    cutoff: datetime
    dry_run: bool
    jobs: int = 0
    attempts: int = 0
    deliveries: int = 0
    files: int = 0
    #: Result files not deleted: remote (``s3://…``) or outside the results directory.
    files_kept: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``imagegen purge --json``."""
        return {**asdict(self), "cutoff": iso(self.cutoff)}


def purge(
    rt: Runtime,
    *,
    older_than: timedelta,
    statuses: Collection[JobStatus] = TERMINAL,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PurgeResult:
    """Delete jobs in ``statuses`` (terminal only) that finished before ``now - older_than``, with their
    attempts, deliveries and local result files. Never touches a job that has not ended."""
    bad = [s.value for s in statuses if s not in TERMINAL]
    if bad:
        raise ValueError(f"only terminal jobs can be purged, not {', '.join(bad)}")
    cutoff = (now or rt.now()) - older_than
    where = _purge_filters(statuses, cutoff)
    root = rt.settings.results_dir
    if dry_run:
        return _count_purgeable(rt, where, cutoff, root)
    totals = {"jobs": 0, "attempts": 0, "deliveries": 0, "files": 0, "files_kept": 0}
    while True:
        with rt.session() as s:
            ids = list(s.scalars(sa.select(col(Job.id)).where(*where).order_by(col(Job.finished_at)).limit(CHUNK)))
            if not ids:
                break
            deleted = delete_jobs(s, ids, where)
        # Files go only after the rows' deletion committed: a failed commit leaves row and files.
        for key, n in zip(("jobs", "attempts", "deliveries"), deleted[:3], strict=True):
            totals[key] += n
        removed, kept = remove_result_files(deleted[3], root)
        totals["files"] += removed
        totals["files_kept"] += kept
    return PurgeResult(cutoff=cutoff, dry_run=False, **totals)


def _purge_filters(statuses: Collection[JobStatus], cutoff: datetime) -> list[ColumnElement[bool]]:
    return [col(Job.status).in_([s.value for s in statuses]), col(Job.finished_at) < cutoff]


def delete_jobs(
    s: Session, ids: Sequence[str], where: Sequence[ColumnElement[bool]]
) -> tuple[int, int, int, list[tuple[str, Any]]]:
    """Delete the jobs among ``ids`` that still match ``where`` (status and age re-checked in the
    ``DELETE``), then their attempts and deliveries; returns the counts and the deleted ``(id, result)``."""
    gone = s.execute(
        sa.delete(Job)
        .where(col(Job.id).in_(ids), *where)
        .returning(col(Job.id), col(Job.result))
        .execution_options(synchronize_session=False)
    ).all()
    gone_ids = [row[0] for row in gone]
    if not gone_ids:
        return 0, 0, 0, []
    attempts: Any = s.execute(
        sa.delete(Attempt).where(col(Attempt.job_id).in_(gone_ids)).execution_options(synchronize_session=False)
    )
    deliveries: Any = s.execute(
        sa.delete(Delivery).where(col(Delivery.job_id).in_(gone_ids)).execution_options(synchronize_session=False)
    )
    return len(gone_ids), int(attempts.rowcount), int(deliveries.rowcount), [(r[0], r[1]) for r in gone]


def local_result_files(result: Any, root: Path) -> tuple[list[Path], int]:
    """``(files under root, entries kept)`` of a job's ``result``: remote paths and paths outside the
    results directory are never deleted (a crafted row must not make a purge delete ``/etc/passwd``)."""
    files: list[Path] = []
    kept = 0
    base = root.resolve()
    for entry in result if isinstance(result, list) else []:
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path:
            continue
        candidate = Path(path)
        if "://" in path or not candidate.is_absolute():
            kept += 1
            continue
        resolved = candidate.resolve()
        if base in resolved.parents:
            files.append(resolved)
        else:
            kept += 1
    return files, kept


def remove_result_files(deleted: Iterable[tuple[str, Any]], root: Path) -> tuple[int, int]:
    """Delete the local result files of deleted jobs (and their emptied ``<job id>/`` folders)."""
    removed = kept = 0
    for _, result in deleted:
        files, skipped = local_result_files(result, root)
        kept += skipped
        for path in files:
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
            folder = path.parent
            if folder != root.resolve() and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return removed, kept


def _count_purgeable(rt: Runtime, where: Sequence[ColumnElement[bool]], cutoff: datetime, root: Path) -> PurgeResult:
    matching = sa.select(col(Job.id)).where(*where)
    with rt.session() as s:
        jobs = s.execute(sa.select(sa.func.count()).select_from(Job).where(*where)).scalar_one()
        attempts = s.execute(
            sa.select(sa.func.count()).select_from(Attempt).where(col(Attempt.job_id).in_(matching))
        ).scalar_one()
        deliveries = s.execute(
            sa.select(sa.func.count()).select_from(Delivery).where(col(Delivery.job_id).in_(matching))
        ).scalar_one()
        files = kept = 0
        for result in s.scalars(sa.select(col(Job.result)).where(*where).execution_options(yield_per=CHUNK)):
            local, skipped = local_result_files(result, root)
            files += sum(1 for p in local if p.is_file())
            kept += skipped
    return PurgeResult(
        cutoff=cutoff,
        dry_run=True,
        jobs=int(jobs),
        attempts=int(attempts),
        deliveries=int(deliveries),
        files=files,
        files_kept=kept,
    )
