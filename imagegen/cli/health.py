"""``imagegen liveness``: the workers' health check (Redis only; compose runs it every few seconds)."""

from __future__ import annotations

import click
import redis

from config.settings import get_settings
from imagegen.cli.output import OK, SOME_FAILED, fail
from imagegen.constants import QUEUES
from imagegen.ops.liveness import check


@click.command()
@click.option("--hostname", required=True, help="The worker's node name, e.g. celery@$HOSTNAME.")
@click.option("--max-idle", type=float, default=120.0, show_default=True, help="Seconds without a finished task.")
@click.option("--queues", default=",".join(QUEUES), show_default=True, help="Queues the worker consumes.")
def liveness(hostname: str, max_idle: float, queues: str) -> None:
    """Exit 1 when work is waiting but the worker has stopped finishing tasks (a health check)."""
    try:
        client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5, socket_connect_timeout=5)
        verdict = check(client, hostname, tuple(q for q in queues.split(",") if q), max_idle_s=max_idle)
    except redis.RedisError as exc:
        fail(f"redis: {exc}", SOME_FAILED)
    click.echo(("alive: " if verdict.alive else "stalled: ") + verdict.reason)
    raise SystemExit(OK if verdict.alive else SOME_FAILED)
