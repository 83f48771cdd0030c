"""``imagegen``: submit, watch and operate jobs (README, 'Using it')."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from config.settings import ConfigError, get_settings
from imagegen.cli.args import existing_job as _existing_job
from imagegen.cli.args import status_callback, timeout_callback, timeout_needs_wait
from imagegen.cli.ops import duration_callback, error_kind_callback, provider_callback, publish, run_requeue
from imagegen.cli.ops import register as register_operator_commands
from imagegen.cli.output import (
    BAD_INPUT,
    GAVE_UP,
    OK,
    SOME_FAILED,
    describe,
    exit_code,
    fail,
    jobs_table,
    print_json,
    wait_for,
)
from imagegen.constants import QUEUES
from imagegen.errors import FieldError, IdempotencyConflict, ImagegenError, RequestInvalid, UnknownProvider
from imagegen.jobs import pauses
from imagegen.jobview import job_to_dict
from imagegen.jsondepth import JsonTooDeep
from imagegen.jsondepth import loads as bounded_loads
from imagegen.messages import Publisher
from imagegen.ops import actions as admin
from imagegen.producer import create_batch, create_job, default_publisher, publish_submits
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.storage import reference_key
from imagegen.store import repo


def _runtime() -> Runtime:
    try:
        return Runtime.create()
    except ImagegenError as exc:
        fail(str(exc), SOME_FAILED)


def _publisher() -> Publisher:
    return default_publisher()


class _Imagegen(click.Group):
    """The ``imagegen`` group: a bad setting, wherever a command first reads them, is one line, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(str(exc))


@click.group(cls=_Imagegen, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """imagegen-queue: a Celery + Redis worker for asynchronous image-generation APIs."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--prompt", required=True, help="What to draw.")
@click.option("--provider", default=None, help="apidot (default), openai or image2.")
@click.option("--model", default=None)
@click.option("--quality", default=None)
@click.option("--size", default=None)
@click.option("--resolution", default=None)
@click.option("--image-url", "image_urls", multiple=True, help="Reference image (https), repeatable.")
@click.option("--image-file", "image_files", multiple=True, type=click.Path(), help="Local reference image.")
@click.option("--idempotency-key", default=None)
@click.option("--priority", default=None, help="interactive (default) or batch.")
@click.option("--callback-url", default=None)
@click.option("--metadata", default=None, help="A JSON object stored with the job.")
@click.option("--deadline", type=float, default=None, help="Seconds until the job expires.")
@click.option("--wait", is_flag=True, help="Wait until the job ends (or is held).")
@click.option(
    "--timeout", type=float, default=None, callback=timeout_callback, help="With --wait: give up after N seconds."
)
@click.option("--json", "as_json", is_flag=True)
def submit(
    prompt: str,
    image_urls: tuple[str, ...],
    image_files: tuple[str, ...],
    metadata: str | None,
    deadline: float | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Queue one image request."""
    timeout_needs_wait(timeout, wait)
    data: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    data["prompt"] = prompt
    if image_urls:
        data["image_urls"] = list(image_urls)
    if deadline is not None:
        data["deadline_s"] = deadline
    if metadata is not None:
        try:
            data["metadata"] = bounded_loads(metadata)
        except JsonTooDeep:
            fail("metadata: nested too deeply")
        except json.JSONDecodeError:
            fail("metadata: must be a JSON object")
    uploads = _read_files(image_files)
    if uploads:
        data["image_files"] = [key for key, _, _ in uploads]
    settings = get_settings()
    try:
        request = ImageRequest.from_dict(data, allow_private_urls=settings.http.allow_private_urls)
    except RequestInvalid as exc:
        fail(str(exc))
    rt = _runtime()
    for key, content, content_type in uploads:  # stored only once the request is valid
        rt.store.put(key, content, content_type)
    try:
        job, created = create_job(rt, request)
    except IdempotencyConflict as exc:
        fail(str(exc))
    if created:
        publish_submits(_publisher(), [job])
    if not wait:
        click.echo(json.dumps(job_to_dict(job), indent=2) if as_json else job.id)
        return
    jobs, timed_out = wait_for(rt, [job.id], timeout=timeout, progress=False)
    if as_json:
        print_json(job_to_dict(jobs[0]))
    else:
        click.echo(describe(jobs[0]))
    raise SystemExit(exit_code(jobs, timed_out))


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def status(job_id: str, as_json: bool) -> None:
    """Show one job (exit 0 whatever its status; 2 if there is no such job)."""
    job = _existing_job(_runtime(), job_id)  # a full id, or a unique short id
    click.echo(json.dumps(job_to_dict(job), indent=2) if as_json else describe(job))


def _read_files(paths: tuple[str, ...]) -> list[tuple[str, bytes, str]]:
    """Local reference images as ``(storage key, bytes, content type)``; a worker reads them from storage."""
    uploads = []
    for i, path in enumerate(paths):
        try:
            content = Path(path).read_bytes()
            key, content_type = reference_key(content)
        except (OSError, ValueError) as exc:
            fail(f"image_files.{i}: {path}: {exc}")
        uploads.append((key, content, content_type))
    return uploads


def read_batch(path: Path, allow_private: bool) -> tuple[list[ImageRequest], list[tuple[int, list[FieldError]]]]:
    """Parse and validate a JSONL file: ``(valid requests, [(line number, errors)])``."""
    valid: list[ImageRequest] = []
    invalid: list[tuple[int, list[FieldError]]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = bounded_loads(line)
            valid.append(ImageRequest.from_dict(data, allow_private_urls=allow_private, priority="batch"))
        except JsonTooDeep as exc:
            field = exc.path[0] if exc.path and isinstance(exc.path[0], str) else "request"
            invalid.append((number, [FieldError(str(field), "nested too deeply")]))
        except json.JSONDecodeError as exc:
            invalid.append((number, [FieldError("request", f"not valid JSON ({exc.msg})")]))
        except RequestInvalid as exc:
            invalid.append((number, exc.errors))
    return valid, invalid


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Queue the valid lines and list the others.")
@click.option("--wait", is_flag=True)
@click.option("--timeout", type=float, default=None, callback=timeout_callback, help="With --wait: seconds.")
@click.option("--json", "as_json", is_flag=True)
def batch(file: Path, skip_invalid: bool, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Queue one request per JSONL line (all-or-nothing unless --skip-invalid)."""
    timeout_needs_wait(timeout, wait)
    valid, invalid = read_batch(file, get_settings().imagegen_allow_private_urls)
    for number, errors in invalid:
        click.echo(f"line {number}: " + "; ".join(str(e) for e in errors), err=True)
    if invalid and not skip_invalid:
        fail(f"{len(invalid)} invalid line(s); nothing was queued (use --skip-invalid to queue the rest)")
    if not valid:
        fail("no valid requests in the file")
    rt = _runtime()
    try:
        batch_id, jobs = create_batch(rt, valid)
    except IdempotencyConflict as exc:
        fail(f"{exc}; nothing was queued")
    publish_submits(_publisher(), [j for j in jobs if j.batch_id == batch_id])
    ids = [j.id for j in jobs]
    skipped = [{"line": n, "errors": [str(e) for e in errs]} for n, errs in invalid]
    if not wait:
        if as_json:
            print_json({"batch_id": batch_id, "jobs": ids, **({"invalid": skipped} if skipped else {})})
        else:
            click.echo(f"batch {batch_id}: {len(ids)} jobs queued, {len(invalid)} lines skipped")
        return
    done, timed_out = wait_for(rt, ids, timeout=timeout, progress=not as_json)
    if as_json:
        counts: dict[str, int] = {}
        for j in done:
            counts[j.status] = counts.get(j.status, 0) + 1
        print_json(
            {
                "batch_id": batch_id,
                "counts": counts,
                "jobs": [job_to_dict(j) for j in done],
                **({"invalid": skipped} if skipped else {}),
            }
        )
    else:
        jobs_table(done, title=f"batch {batch_id}")
    raise SystemExit(exit_code(done, timed_out))


@main.command()
@click.option("--status", "status_", default=None, callback=status_callback, help="Only jobs in this status.")
@click.option("--batch", "batch_id", default=None)
@click.option("--provider", default=None, callback=provider_callback)
@click.option("--error-kind", default=None, callback=error_kind_callback)
@click.option("--older-than", default=None, callback=duration_callback, help="Created before this long ago (2h, 30d).")
@click.option("--newer-than", default=None, callback=duration_callback, help="Created within this long (30m, 2h).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100)
@click.option("--json", "as_json", is_flag=True)
def jobs(
    status_: str | None,
    batch_id: str | None,
    provider: str | None,
    error_kind: str | None,
    older_than: Any,
    newer_than: Any,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    rt = _runtime()
    now = rt.now()
    with rt.read_session() as s:
        found = repo.list_jobs(
            s,
            status=status_,
            batch_id=batch_id,
            provider=provider,
            error_kind=error_kind,
            created_after=now - newer_than if newer_than else None,
            created_before=now - older_than if older_than else None,
            limit=limit,
        )
    if as_json:
        print_json([job_to_dict(j) for j in found])
    else:
        jobs_table(found)


@main.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job that has not ended (exit 1 if it already ended)."""
    rt = _runtime()
    job_id = _existing_job(rt, job_id).id
    result = admin.cancel(rt, job_id)
    if not result.ok:
        fail(result.reason, SOME_FAILED)
    click.echo(f"{job_id} canceled")


@main.command()
@click.argument("job_id", required=False)
@click.option("--failed", is_flag=True, help="Requeue failed jobs in bulk (see also imagegen requeue).")
@click.option("--error-kind", default=None, callback=error_kind_callback, help="With --failed: only this error kind.")
@click.option("--provider", default=None, callback=provider_callback, help="With --failed: only this provider.")
@click.option("--since", default=None, callback=duration_callback, help="With --failed: ended within, e.g. 2h.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
def retry(
    job_id: str | None, failed: bool, error_kind: str | None, provider: str | None, since: Any, limit: int
) -> None:
    """Queue a failed, expired or canceled job again (a new upstream submit); --failed: many at once."""
    if failed == (job_id is not None):
        fail("job_id: give a job id, or --failed (with optional filters) for a bulk requeue")
    if job_id is None:
        run_requeue(status="failed", error_kind=error_kind, provider=provider, since=since, limit=limit)
        return
    rt = _runtime()
    job_id = _existing_job(rt, job_id).id
    result = admin.retry(rt, job_id)
    if not result.ok:
        fail(result.reason, SOME_FAILED)
    publish(result.steps)  # a broker outage is one warning: the reconciler releases the queued row
    click.echo(f"{job_id} queued again")


@main.command()
@click.option("--provider", required=True)
def resume(provider: str) -> None:
    """Unpause a provider key (after topping up or rotating it) and release its held jobs."""
    rt = _runtime()
    try:
        click.echo(pauses.resume(rt, provider))
    except UnknownProvider:
        fail(f"provider: unknown provider {provider!r}")


@main.command()
@click.option("--hostname", required=True, help="The worker's node name, e.g. celery@$HOSTNAME.")
@click.option("--max-idle", type=float, default=120.0, show_default=True, help="Seconds without a finished task.")
@click.option("--queues", default=",".join(QUEUES), show_default=True, help="Queues the worker consumes.")
def liveness(hostname: str, max_idle: float, queues: str) -> None:
    """Exit 1 when work is waiting but the worker has stopped finishing tasks (a health check)."""
    import redis

    from imagegen.ops.liveness import check

    try:
        client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5, socket_connect_timeout=5)
        verdict = check(client, hostname, tuple(q for q in queues.split(",") if q), max_idle_s=max_idle)
    except redis.RedisError as exc:
        fail(f"redis: {exc}", SOME_FAILED)
    click.echo(("alive: " if verdict.alive else "stalled: ") + verdict.reason)
    raise SystemExit(OK if verdict.alive else SOME_FAILED)


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations up to the newest schema."""
    from imagegen.store.db import prepare_sqlite_directory, upgrade

    settings = get_settings()
    try:
        prepare_sqlite_directory(settings.effective_database_url, create=settings.database_url is None)
        upgrade(settings.effective_database_url)
    except ImagegenError as exc:
        fail(str(exc))
    click.echo("database is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the HTTP API: intake (/v1), upstream webhooks, /healthz, /metrics, /docs."""
    import uvicorn

    from imagegen.api import create_app

    # The runtime is built here so a schema that is behind stops us with one clear line, not a traceback.
    rt = _runtime()
    try:
        uvicorn.run(create_app(runtime=rt), host=host, port=port, log_level="warning")
    finally:
        rt.close()


@main.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=8800)
def simulator(host: str, port: int) -> None:
    """Run the local fake of the providers' HTTP APIs."""
    from imagegen.simulator.app import run

    run(host, port)


@main.command()
@click.option("--jobs", "count", type=int, default=20, help="How many requests in the demo batch.")
def demo(count: int) -> None:
    """Start Redis (if needed), the simulator, a worker and beat; run a mixed batch; print the results."""
    from imagegen.cli.demo import run_demo

    raise SystemExit(run_demo(count))


register_operator_commands(main)  # stats, requeue, purge (imagegen/cli/ops.py)

__all__ = ["BAD_INPUT", "GAVE_UP", "OK", "main"]


if __name__ == "__main__":
    main()
