"""``imagegen submit`` and ``imagegen batch``: validate requests, store them as jobs, publish their submits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from config.settings import get_settings
from imagegen.cli.args import timeout_callback, timeout_needs_wait
from imagegen.cli.output import fail, print_json
from imagegen.cli.render import describe, exit_code, jobs_table, wait_for
from imagegen.cli.runtime import open_runtime
from imagegen.errors import FieldError, IdempotencyConflict, RequestInvalid
from imagegen.jobview import job_to_dict
from imagegen.jsondepth import JsonTooDeep
from imagegen.jsondepth import loads as bounded_loads
from imagegen.producer import create_batch, create_job, default_publisher, publish_submits
from imagegen.request import ImageRequest, callback_url_problem
from imagegen.storage import reference_key


@click.command()
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
    rt = open_runtime()
    for key, content, content_type in uploads:  # stored only once the request is valid
        rt.store.put(key, content, content_type)
    try:
        job, created = create_job(rt, request)
    except IdempotencyConflict as exc:
        fail(str(exc))
    if created:
        publish_submits(default_publisher(), [job])
    if not wait:
        click.echo(json.dumps(job_to_dict(job), indent=2) if as_json else job.id)
        return
    jobs, timed_out = wait_for(rt, [job.id], timeout=timeout, progress=False)
    if as_json:
        print_json(job_to_dict(jobs[0]))
    else:
        click.echo(describe(jobs[0]))
    raise SystemExit(exit_code(jobs, timed_out))


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


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Queue the valid lines and list the others.")
@click.option("--callback-url", default=None, help="Gets one signed batch.finished POST when every job has ended.")
@click.option("--wait", is_flag=True)
@click.option("--timeout", type=float, default=None, callback=timeout_callback, help="With --wait: seconds.")
@click.option("--json", "as_json", is_flag=True)
def batch(
    file: Path, skip_invalid: bool, callback_url: str | None, wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Queue one request per JSONL line (all-or-nothing unless --skip-invalid)."""
    timeout_needs_wait(timeout, wait)
    allow_private = get_settings().http.allow_private_urls
    bad_url = None if callback_url is None else callback_url_problem(callback_url, allow_private_urls=allow_private)
    if bad_url:
        fail(f"callback_url: {bad_url}; nothing was queued")
    valid, invalid = read_batch(file, allow_private)
    for number, errors in invalid:
        click.echo(f"line {number}: " + "; ".join(str(e) for e in errors), err=True)
    if invalid and not skip_invalid:
        fail(f"{len(invalid)} invalid line(s); nothing was queued (use --skip-invalid to queue the rest)")
    if not valid:
        fail("no valid requests in the file")
    rt = open_runtime()
    try:
        batch_id, jobs = create_batch(rt, valid, callback_url=callback_url)
    except IdempotencyConflict as exc:
        fail(f"{exc}; nothing was queued")
    publish_submits(default_publisher(), [j for j in jobs if j.created])
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
