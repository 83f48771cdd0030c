"""Operator commands: ``imagegen jobs``, ``stats``, ``requeue`` and ``purge`` (listing and bulk work by filters).

Plain click commands, loaded by ``imagegen.cli.main`` when one of them runs (its ``COMMANDS`` table).
``python -m imagegen.cli.ops …`` runs the whole ``imagegen`` group.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from imagegen.cli.args import error_kind_callback, provider_callback, status_callback, tenant_callback
from imagegen.cli.database import open_database
from imagegen.cli.output import SOME_FAILED, fail, print_json
from imagegen.cli.render import jobs_table
from imagegen.errors import ImagegenError
from imagegen.jobview import job_to_dict
from imagegen.messages import Step
from imagegen.ops import purge as purge_ops
from imagegen.ops import requeue as requeue_ops
from imagegen.ops import stats as stats_ops
from imagegen.ops.purge import PurgeResult
from imagegen.ops.stats import Stats, format_duration, parse_duration
from imagegen.producer import default_publisher
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.transitions import TERMINAL

log = logging.getLogger(__name__)


@contextmanager
def _runtime() -> Iterator[Runtime]:
    """This process's runtime, closed afterwards; a database that fails is one line on stderr, exit 1."""
    try:
        rt = Runtime.create()
    except ImagegenError as exc:
        fail(str(exc), SOME_FAILED)
    except SQLAlchemyError as exc:
        fail(_database_error(exc), SOME_FAILED)
    try:
        yield rt
    except SQLAlchemyError as exc:
        fail(_database_error(exc), SOME_FAILED)
    finally:
        rt.close()


def _database_error(exc: SQLAlchemyError) -> str:
    """One line about a database error, without the SQL or the parameters (they may hold prompts)."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"database: {first}"


def duration_callback(_ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """Click callback for duration flags (``30m``, ``2h``, ``30d``): a bad value exits 2 with one line."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        fail(f"{param.opts[0]}: {exc}")


# --- jobs ---------------------------------------------------------------------------------------


@click.command()
@click.option("--status", "status_", default=None, callback=status_callback, help="Only jobs in this status.")
@click.option("--batch", "batch_id", default=None)
@click.option("--provider", default=None, callback=provider_callback)
@click.option("--error-kind", default=None, callback=error_kind_callback)
@click.option("--older-than", default=None, callback=duration_callback, help="Created before this long ago (2h, 30d).")
@click.option("--newer-than", default=None, callback=duration_callback, help="Created within this long (30m, 2h).")
@click.option("--tenant", default=None, callback=tenant_callback, help="Only this tenant's jobs.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100)
@click.option("--json", "as_json", is_flag=True)
def jobs(
    status_: str | None,
    batch_id: str | None,
    provider: str | None,
    error_kind: str | None,
    older_than: timedelta | None,
    newer_than: timedelta | None,
    tenant: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    database = open_database()  # the database alone: listing needs no Runtime
    now = database.now()
    with database.read_session() as s:
        found = repo.list_jobs(
            s,
            status=status_,
            batch_id=batch_id,
            provider=provider,
            error_kind=error_kind,
            created_after=now - newer_than if newer_than else None,
            created_before=now - older_than if older_than else None,
            tenant=tenant,
            limit=limit,
        )
    if as_json:
        print_json([job_to_dict(j) for j in found])
    else:
        jobs_table(found)


# --- stats --------------------------------------------------------------------------------------


@click.command()
@click.option("--since", default="24h", show_default=True, callback=duration_callback, help="Window: 30m, 2h, 7d, …")
@click.option("--provider", default=None, callback=provider_callback, help="Only this provider's jobs.")
@click.option("--json", "as_json", is_flag=True)
def stats(since: timedelta, provider: str | None, as_json: bool) -> None:
    """Counts, throughput, p50/p95 durations, calls per job and credits spent over a window."""
    with _runtime() as rt:
        result = stats_ops.stats(rt, since=since, provider=provider)
    if as_json:
        print_json(result.to_dict())
    else:
        click.echo(render_stats(result, since))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def render_stats(result: Stats, window: timedelta) -> str:
    """The human form of ``imagegen stats``."""
    total, upstream = result.total_seconds, result.upstream_seconds
    fin = result.finished_by_status
    means = result.mean_submit_attempts, result.mean_polls
    lines = [
        f"last {format_duration(window)} (since {result.since:%Y-%m-%d %H:%M:%S} UTC), "
        f"provider: {result.provider or 'all'}",
        f"created     {sum(result.created_by_status.values())} ({_counts(result.created_by_status)})",
        f"not ended   {_counts(result.active_by_status)}"
        + (f"; held by {_counts(result.held_by_error_kind)}" if result.held_by_error_kind else ""),
        f"ended       {result.finished} ({_counts(fin)}): {result.finished_per_minute:.2f}/min, "
        f"succeeded {result.succeeded_per_minute:.2f}/min",
        f"error kinds {_counts(result.finished_by_error_kind)}",
        f"duration    created→finished p50 {_seconds(total.p50)} p95 {_seconds(total.p95)}; "
        f"submitted→finished p50 {_seconds(upstream.p50)} p95 {_seconds(upstream.p95)} "
        f"(succeeded jobs: {total.count})",
        "per job     "
        + ("-" if means[0] is None else f"{means[0]:.2f} submit calls, {means[1] or 0:.2f} polls (mean, ended jobs)"),
        f"credits     {result.credits}" + (f" ({_counts(result.credits_by_tier)})" if result.credits_by_tier else ""),
    ]
    return "\n".join(lines)


# --- requeue ------------------------------------------------------------------------------------


def _retry_status(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return requeue_ops.retryable_status(value).value
    except ValueError as exc:
        fail(f"{param.opts[0]}: {exc}")


@click.command()
@click.option("--status", "status_", default="failed", show_default=True, callback=_retry_status)
@click.option("--error-kind", default=None, callback=error_kind_callback, help="Only this error kind.")
@click.option("--provider", default=None, callback=provider_callback)
@click.option("--since", default=None, callback=duration_callback, help="Only jobs ended within, e.g. 2h.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Only list what would be requeued.")
@click.option("--json", "as_json", is_flag=True)
def requeue(
    status_: str,
    error_kind: str | None,
    provider: str | None,
    since: timedelta | None,
    limit: int,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Queue failed (or expired, canceled) jobs again in bulk: a new upstream submit each."""
    run_requeue(
        status=status_,
        error_kind=error_kind,
        provider=provider,
        since=since,
        limit=limit,
        dry_run=dry_run,
        as_json=as_json,
    )


def run_requeue(
    *,
    status: str,
    error_kind: str | None,
    provider: str | None,
    since: timedelta | None,
    limit: int,
    dry_run: bool = False,
    as_json: bool = False,
) -> list[str]:
    """The body of ``imagegen requeue`` (and of ``imagegen retry --failed``): requeue, publish, report."""
    filters: dict[str, Any] = {
        "status": status,
        "error_kind": error_kind,
        "provider": provider,
        "since": since,
        "limit": limit,
    }
    with _runtime() as rt:
        if dry_run:
            ids = requeue_ops.find_retryable(rt, **filters)
        else:
            steps = requeue_ops.retry_many(rt, **filters)
            publish(steps)
            ids = [step.job_id for step in steps]
    what = " ".join(x for x in (status, error_kind and f"({error_kind})") if x)
    if as_json:
        print_json({"dry_run": dry_run, "jobs": ids})
    else:
        click.echo(f"{'would requeue' if dry_run else 'requeued'} {len(ids)} {what} jobs")
        for job_id in ids:
            click.echo(f"  {job_id}")
    return ids


def publish(steps: Sequence[Step]) -> None:
    """Publish the submits of requeued jobs. The rows are committed already: a message that cannot be
    sent (broker down) is released by the reconciler after ``IMAGEGEN_DISPATCH_GRACE_S``, so a failure
    is one warning line, not an error."""
    if not steps:
        return
    unsent = 0
    publisher = default_publisher()
    for step in steps:
        try:
            publisher.publish(step)
        except Exception:  # the broker is down: the durable rows are enough
            log.debug("could not publish %s", step, exc_info=True)
            unsent += 1
    if unsent:
        click.echo(
            f"warning: {unsent} submit messages could not be sent; the reconciler releases those jobs shortly",
            err=True,
        )


# --- purge --------------------------------------------------------------------------------------


def _purge_statuses(_ctx: click.Context, param: click.Parameter, value: str) -> frozenset[Any]:
    try:
        return purge_ops.purgeable_statuses(value)
    except ValueError as exc:
        fail(f"{param.opts[0]}: {exc}")


@click.command()
@click.option("--older-than", default=None, callback=duration_callback, help="Ended before this long ago, e.g. 30d.")
@click.option(
    "--status",
    "statuses",
    default="terminal",
    show_default=True,
    callback=_purge_statuses,
    help="terminal, or a comma-separated list of succeeded, failed, expired, canceled.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--json", "as_json", is_flag=True)
def purge(older_than: timedelta | None, statuses: frozenset[Any], dry_run: bool, as_json: bool) -> None:
    """Delete ended jobs (with their attempt log, deliveries and local result files); never active ones."""
    if older_than is None:
        fail("--older-than: is required (e.g. --older-than 30d)")
    with _runtime() as rt:
        result = purge_ops.purge(rt, older_than=older_than, statuses=statuses, dry_run=dry_run)
    if as_json:
        print_json(result.to_dict())
    else:
        click.echo(render_purge(result, statuses))


def render_purge(result: PurgeResult, statuses: frozenset[Any]) -> str:
    """The human form of ``imagegen purge``."""
    which = "terminal" if statuses == TERMINAL else ",".join(sorted(s.value for s in statuses))
    verb = "would delete" if result.dry_run else "deleted"
    line = (
        f"{verb} {result.jobs} {which} jobs ended before {result.cutoff:%Y-%m-%d %H:%M:%S} UTC: "
        f"{result.attempts} attempts, {result.deliveries} deliveries, {result.files} result files"
    )
    if result.files_kept:
        line += f" ({result.files_kept} remote or outside-the-results-dir files left in place)"
    return line


if __name__ == "__main__":
    import runpy

    runpy.run_module("imagegen.cli.main", run_name="__main__")  # the full imagegen group
