"""``imagegen cancel``, ``retry`` and ``resume``: one job, or one provider key, changed by hand."""

from __future__ import annotations

from datetime import timedelta

import click

from imagegen.cli.args import error_kind_callback, existing_job, provider_callback
from imagegen.cli.ops import duration_callback, publish, run_requeue
from imagegen.cli.output import SOME_FAILED, fail
from imagegen.cli.runtime import open_runtime
from imagegen.errors import UnknownProvider
from imagegen.jobs import pauses
from imagegen.ops import actions as admin


@click.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job that has not ended (exit 1 if it already ended)."""
    rt = open_runtime()
    job_id = existing_job(rt, job_id).id
    result = admin.cancel(rt, job_id)
    if not result.ok:
        fail(result.reason, SOME_FAILED)
    click.echo(f"{job_id} canceled")


@click.command()
@click.argument("job_id", required=False)
@click.option("--failed", is_flag=True, help="Requeue failed jobs in bulk (see also imagegen requeue).")
@click.option("--error-kind", default=None, callback=error_kind_callback, help="With --failed: only this error kind.")
@click.option("--provider", default=None, callback=provider_callback, help="With --failed: only this provider.")
@click.option("--since", default=None, callback=duration_callback, help="With --failed: ended within, e.g. 2h.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
def retry(
    job_id: str | None, failed: bool, error_kind: str | None, provider: str | None, since: timedelta | None, limit: int
) -> None:
    """Queue a failed, expired or canceled job again (a new upstream submit); --failed: many at once."""
    if failed == (job_id is not None):
        fail("job_id: give a job id, or --failed (with optional filters) for a bulk requeue")
    if job_id is None:
        run_requeue(status="failed", error_kind=error_kind, provider=provider, since=since, limit=limit)
        return
    rt = open_runtime()
    job_id = existing_job(rt, job_id).id
    result = admin.retry(rt, job_id)
    if not result.ok:
        fail(result.reason, SOME_FAILED)
    publish(result.steps)  # a broker outage is one warning: the reconciler releases the queued row
    click.echo(f"{job_id} queued again")


@click.command()
@click.option("--provider", required=True)
def resume(provider: str) -> None:
    """Unpause a provider key (after topping up or rotating it) and release its held jobs."""
    rt = open_runtime()
    try:
        click.echo(pauses.resume(rt, provider))
    except UnknownProvider:
        fail(f"provider: unknown provider {provider!r}")
