"""Task messages other services send by name: arguments checked without a ``TypeError``, rejections recorded.

Anyone with access to the broker can send ``imagegen.enqueue`` (and the other task names) with any
arguments. Nothing in such a message may raise out of validation: a bad message is a rejection, logged
with field names only, and an ``imagegen.enqueue`` rejection that carries a job id becomes a ``failed``
job with kind ``invalid_request`` under that id, so the sender can read why (README "Sending tasks by
name").
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

from sqlalchemy.exc import IntegrityError

from imagegen.constants import PROVIDERS
from imagegen.errors import ErrorKind, FieldError, IdempotencyConflict, JobIdConflict, RequestInvalid
from imagegen.ids import is_job_id
from imagegen.metrics import observe_end
from imagegen.producer import create_job
from imagegen.request import DEFAULT_TENANT, MAX_PROMPT, ImageRequest, is_tenant
from imagegen.runtime import Runtime
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus

log = logging.getLogger(__name__)

ENQUEUE_PARAMS = ("request", "job_id")
#: Parameters of the tasks that name a row by its id (a UUID string), checked before the task runs.
ID_PARAMS = ("job_id", "batch_id")
#: A rejection lists every problem, within reason (the message is shown in job JSON and logs).
MAX_REJECTION_MESSAGE = 4_000
_MAX_NAME = 100


def bind_arguments(
    params: Sequence[str], args: Any, kwargs: Any, *, required: int = 0
) -> tuple[dict[str, Any], list[FieldError]]:
    """Map a message's ``args``/``kwargs`` onto ``params`` (in order; the first ``required`` are required).

    Returns the bound values and one ``FieldError`` per mismatch (unknown, repeated or missing
    arguments), instead of the ``TypeError`` a Python call would raise.
    """
    positional = list(args) if isinstance(args, list | tuple) else []
    named = kwargs if isinstance(kwargs, Mapping) else {}
    values = dict(zip(params, positional, strict=False))
    errors: list[FieldError] = []
    if len(positional) > len(params):
        errors.append(FieldError("args", f"at most {len(params)} positional arguments ({len(positional)} given)"))
    for key, value in named.items():
        name = str(key)[:_MAX_NAME]
        if key not in params:
            errors.append(FieldError(name, "unknown argument"))
        elif key in values:
            errors.append(FieldError(name, "given twice"))
        else:
            values[key] = value
    errors += [FieldError(name, "is required") for name in params[:required] if name not in values]
    return values, errors


F = TypeVar("F", bound=Callable[..., Any])


def by_name(fn: F) -> F:
    """Wrap the function of task ``imagegen.<name>`` so that any arguments are a logged rejection at worst.

    The message's arguments are bound to ``fn``'s parameters by ``bind_arguments``, and a ``job_id`` or
    ``batch_id`` must be a UUID string; a mismatch returns None instead of raising (no traceback, no
    retry loop).
    """
    signature = inspect.signature(fn)
    params = tuple(signature.parameters)
    required = sum(1 for p in signature.parameters.values() if p.default is inspect.Parameter.empty)
    task = f"imagegen.{fn.__name__}"

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        values, errors = bind_arguments(params, args, kwargs, required=required)
        for name in ID_PARAMS:
            if name in values and not is_job_id(values[name]):
                errors.append(FieldError(name, "must be a UUID string"))
        if errors:
            log.warning("%s rejected: %s", task, "; ".join(str(e) for e in errors)[:MAX_REJECTION_MESSAGE])
            return None
        return fn(**values)

    return cast(F, guarded)


@dataclass(frozen=True)
class Intake:
    """The outcome of one ``imagegen.enqueue`` message: a valid request, or the problems with it."""

    job_id: str | None
    request: ImageRequest | None
    errors: list[FieldError]
    raw: Any = None


def read_enqueue(rt: Runtime, args: Any, kwargs: Any) -> Intake:
    """Bind and validate an ``imagegen.enqueue(request, job_id=None)`` message; never raises."""
    values, errors = bind_arguments(ENQUEUE_PARAMS, args, kwargs, required=1)
    job_id = values.get("job_id")
    if job_id is not None and not is_job_id(job_id):
        errors.append(FieldError("job_id", "must be a UUID string"))
        job_id = None
    if "request" not in values:
        return Intake(job_id, None, errors)
    raw = values["request"]
    try:
        request = ImageRequest.from_dict(raw, allow_private_urls=rt.settings.http.allow_private_urls)
    except RequestInvalid as exc:
        return Intake(job_id, None, errors + _every_problem(rt, raw, exc.errors), raw)
    except Exception as exc:  # a validation bug must reject this message, not retry or crash on it
        log.error("imagegen.enqueue: validation raised %s", exc.__class__.__name__)
        return Intake(job_id, None, [*errors, FieldError("request", "could not be validated")], raw)
    return Intake(job_id, None if errors else request, errors, raw)


def _every_problem(rt: Runtime, raw: Any, first: list[FieldError]) -> list[FieldError]:
    """``first`` plus what the field rules say about the rest of the request.

    ``from_dict`` stops at unknown fields and wrong types; a sender that cannot see our logs should
    learn every problem from one rejection, so the well-typed fields are validated on their own too.
    """
    named = {e.field.split(".", 1)[0] for e in first}
    if not isinstance(raw, Mapping) or "request" in named:
        return first
    rest = {k: v for k, v in raw.items() if k not in named}
    try:
        ImageRequest.from_dict(rest, allow_private_urls=rt.settings.http.allow_private_urls)
    except RequestInvalid as exc:
        return first + [e for e in exc.errors if e.field.split(".", 1)[0] not in named]
    except Exception:  # the first problems are enough to reject
        return first
    return first


def enqueue_message(rt: Runtime, args: Any, kwargs: Any) -> tuple[Job | None, dict[str, Any]]:
    """Serve one ``imagegen.enqueue`` message: ``(job to publish, answer)``; a rejection has no job.

    The job is the existing one for a repeated job id or idempotency key (its submit went out then).
    """
    intake = read_enqueue(rt, args, kwargs)
    if intake.request is None:
        message = reject_enqueue(rt, intake.job_id, intake.errors, intake.raw)
        return None, {"error": {"kind": ErrorKind.INVALID_REQUEST.value, "message": message}}
    try:
        job, _created = create_job(rt, intake.request, job_id=intake.job_id)
    except IdempotencyConflict as exc:
        message = reject_enqueue(
            rt,
            intake.job_id,
            [FieldError("idempotency_key", f"{exc.key!r} was already used for a different request")],
            intake.raw,
        )
        return None, {"error": {"kind": ErrorKind.INVALID_REQUEST.value, "message": message}}
    except JobIdConflict:
        message = reject_enqueue(
            rt, intake.job_id, [FieldError("job_id", "already names a job of another tenant or request")], intake.raw
        )
        return None, {"error": {"kind": ErrorKind.INVALID_REQUEST.value, "message": message}}
    return job, {"job_id": job.id}


def reject_enqueue(rt: Runtime, job_id: str | None, errors: Sequence[FieldError], raw_request: Any) -> str:
    """Log a rejected ``imagegen.enqueue`` and record it under ``job_id`` (never over an existing job).

    Returns the rejection message (every problem, field names only, never a prompt).
    """
    message = "; ".join(str(e) for e in errors) or "invalid request"
    if len(message) > MAX_REJECTION_MESSAGE:
        message = message[: MAX_REJECTION_MESSAGE - 1] + "…"
    if job_id is None:
        log.warning("imagegen.enqueue rejected (no job_id to record it under): %s", message)
        return message
    now = rt.now()
    row = Job(
        id=job_id,
        provider=_safe_str(raw_request, "provider", 32, PROVIDERS) or "apidot",
        model=_safe_str(raw_request, "model", 200) or "gpt-image-2",
        request=_safe_request(raw_request),
        tenant=_safe_tenant(raw_request),
        status=JobStatus.FAILED.value,
        error_kind=ErrorKind.INVALID_REQUEST.value,
        error_message=f"rejected by imagegen.enqueue: {message}",
        created_at=now,
        updated_at=now,
        finished_at=now,
        deadline_at=now + timedelta(seconds=rt.settings.timers.default_deadline_s),
    )
    try:
        with rt.session() as s:
            s.add(row)
    except IntegrityError:
        log.warning("imagegen.enqueue rejected for existing job %s (left as it is): %s", job_id, message)
        return message
    observe_end(JobStatus.FAILED.value, ErrorKind.INVALID_REQUEST.value)
    log.warning("imagegen.enqueue rejected, recorded as failed job %s: %s", job_id, message)
    return message


def _safe_request(raw: Any) -> dict[str, Any]:
    """The plain text fields of a rejected request that any store and any JSON renderer can hold."""
    out: dict[str, Any] = {}
    for name in ("prompt", "provider", "model", "quality", "size", "resolution", "priority"):
        value = _safe_str(raw, name, MAX_PROMPT if name == "prompt" else 200)
        if value is not None:
            out[name] = value
    return out


def _safe_tenant(raw: Any) -> str:
    """The rejected request's tenant when it names a valid one, so that tenant can read why (else ``default``)."""
    value = raw.get("tenant") if isinstance(raw, Mapping) else None
    return str(value) if is_tenant(value) else DEFAULT_TENANT


def _safe_str(raw: Any, name: str, max_len: int, allowed: Sequence[str] | None = None) -> str | None:
    value = raw.get(name) if isinstance(raw, Mapping) else None
    if not isinstance(value, str) or not value or len(value) > max_len or "\x00" in value:
        return None
    if allowed is not None and value not in allowed:
        return None
    try:
        value.encode("utf-8")  # lone surrogates: no database can store them
    except UnicodeError:
        return None
    return value
