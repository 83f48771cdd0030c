"""``imagegen status``: one job, looked up in the database alone (no ``Runtime``, no providers)."""

from __future__ import annotations

import json

import click

from imagegen.cli.args import existing_job
from imagegen.cli.database import open_database
from imagegen.cli.render import describe
from imagegen.jobview import job_to_dict


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def status(job_id: str, as_json: bool) -> None:
    """Show one job (exit 0 whatever its status; 2 if there is no such job)."""
    job = existing_job(open_database(), job_id)  # a full id, or a unique short id
    click.echo(json.dumps(job_to_dict(job), indent=2) if as_json else describe(job))
