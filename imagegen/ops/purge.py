"""Purge: delete terminal jobs finished before a cutoff, with their attempt and delivery rows and their
locally stored result files.

The ``DELETE`` itself re-checks status and age, so a job requeued concurrently is never deleted."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from imagegen.jobview import iso
from imagegen.ops.requeue import CHUNK
from imagegen.runtime import Runtime
from imagegen.store.models import Attempt, Delivery, Job
from imagegen.store.transitions import TERMINAL, JobStatus


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
