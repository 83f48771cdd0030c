"""Showing jobs in the CLI: descriptions, tables, exit codes from outcomes, waiting with a progress bar."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from imagegen.cli.output import GAVE_UP, OK, SOME_FAILED
from imagegen.jobview import job_to_dict
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import TERMINAL, JobStatus

_SETTLED = {s.value for s in TERMINAL} | {JobStatus.HELD.value}


class Reader(Protocol):
    """What reading jobs needs: a ``Runtime``, or the CLI's database-only ``Database``."""

    def read_session(self) -> AbstractContextManager[Session]: ...


def wait_for(rt: Reader, ids: Sequence[str], *, timeout: float | None, progress: bool) -> tuple[list[Job], bool]:
    """Wait until every job is terminal or held (or ``timeout``); returns ``(jobs, timed_out)``."""
    deadline = time.monotonic() + timeout if timeout else None
    bar = Progress(
        TextColumn("[bold]jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    )
    with bar:
        task = bar.add_task("", total=len(ids))
        while True:
            jobs = load(rt, ids)
            settled = sum(j.status in _SETTLED for j in jobs)
            counts = Counter(j.status for j in jobs)
            bar.update(task, completed=settled, description=" ".join(f"{k}:{v}" for k, v in sorted(counts.items())))
            if settled == len(jobs):
                return jobs, False
            if deadline is not None and time.monotonic() >= deadline:
                return jobs, True
            time.sleep(0.25)


def load(rt: Reader, ids: Sequence[str]) -> list[Job]:
    """The jobs with these ids, in that order (missing ids skipped)."""
    with rt.read_session() as s:
        found = [repo.get_job(s, i) for i in ids]
    return [j for j in found if j is not None]


def exit_code(jobs: Sequence[Job], timed_out: bool) -> int:
    """0 all succeeded; 3 gave up (timeout or a held job); 1 some job failed, expired or was canceled."""
    if timed_out or any(j.status == JobStatus.HELD for j in jobs):
        return GAVE_UP
    if all(j.status == JobStatus.SUCCEEDED for j in jobs):
        return OK
    return SOME_FAILED


def jobs_table(jobs: Sequence[Job], *, title: str | None = None) -> None:
    """A readable table of jobs on stdout."""
    table = Table(title=title, show_lines=False)
    for col in ("id", "status", "error kind", "provider", "polls", "submits", "result url / upstream task"):
        table.add_column(col, overflow="fold")
    for job in jobs:
        view = job_to_dict(job)
        # A recovered job shows the retryable error it got past, in parentheses.
        kind = job.error_kind or (f"({job.last_error_kind})" if job.last_error_kind else "")
        result = view["result"][0]["url"] if view["result"] else (view["upstream_task_id"] or "")
        table.add_row(
            job.id[:8],
            job.status,
            kind,
            job.provider,
            str(job.polls),
            str(job.submit_attempts),
            result,
        )
    Console(width=max(120, Console().width)).print(table)


def describe(job: Job) -> str:
    """A few human lines about one job."""
    view = job_to_dict(job)
    lines = [f"{job.id}  {job.status}  ({job.provider}/{job.model})"]
    if view["error"]:
        lines.append(f"  error: {view['error']['kind']}: {view['error']['message']}")
    elif view["last_error"]:
        lines.append(f"  last error: {view['last_error']['kind']}: {view['last_error']['message']}")
    lines.append(f"  submits: {job.submit_attempts}  polls: {job.polls}  upstream: {job.upstream_task_id or '-'}")
    lines += [f"  result: {r['url']}" for r in view["result"]]
    return "\n".join(lines)
