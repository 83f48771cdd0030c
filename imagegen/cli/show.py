"""``imagegen status``: one job, looked up in the database alone (no ``Runtime``, no providers)."""

from __future__ import annotations

import json

import click

from imagegen.cli.args import existing_job
from imagegen.cli.database import open_database
from imagegen.cli.render import describe
from imagegen.jobview import job_to_dict
from imagegen.store import repo


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def status(job_id: str, as_json: bool) -> None:
    """Show one job (exit 0 whatever its status; 2 if there is no such job)."""
    db = open_database()
    job = existing_job(db, job_id)  # a full id, or a unique short id
    if not as_json:
        click.echo(describe(job))
        return
    with db.read_session() as s:
        position = repo.queue_position(s, job)
    click.echo(json.dumps(job_to_dict(job, queue_position=position), indent=2))
