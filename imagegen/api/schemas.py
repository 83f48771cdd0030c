"""Pydantic models that describe the HTTP API in OpenAPI (served at ``/docs``).

Responses are rendered by ``jobview.job_to_dict`` and sent as they are; these models document them (and
schemathesis checks the documentation against what is sent). Job requests are *not* validated by
pydantic: ``ImageRequest.from_dict`` is the one validator, shared with the CLI and the producer API, so
``JobRequest`` below exists only to give ``/docs`` and API fuzzers the shape of a request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from imagegen.errors import ErrorKind
from imagegen.request import MAX_DEADLINE_S, MAX_IDEMPOTENCY_KEY, MAX_IMAGE_URLS, MAX_PROMPT, TENANT_RE
from imagegen.store.transitions import JobStatus

#: The batch size bound of ``POST /v1/batches``.
MAX_BATCH = 10_000

ProviderName = Literal["apidot", "openai", "image2"]
Priority = Literal["interactive", "batch"]
_DATETIME: dict[str, Any] = {"format": "date-time"}

JOB_REQUEST_EXAMPLE: dict[str, Any] = {
    "provider": "apidot",
    "model": "gpt-image-2",
    "prompt": "a lighthouse at dawn, watercolor",
    "quality": "medium",
    "size": "3:2",
    "resolution": "2K",
    "idempotency_key": "order-1234-cover",
    "metadata": {"order": 1234},
}


class JobRequest(BaseModel):
    """One image request (the fields of ``ImageRequest``). Optional fields may be null, which counts as absent."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": JOB_REQUEST_EXAMPLE})

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    provider: ProviderName | None = "apidot"
    model: str | None = Field(default="gpt-image-2", description="gpt-image-2, gpt-image-2-edit, or a provider id")
    quality: Literal["low", "medium", "high", "auto"] | None = Field(default=None, description="auto: openai only")
    size: str | None = Field(default=None, description="apidot: auto, 1:1 … 21:9 or WxH; openai: auto, 1024x1024 …")
    resolution: Literal["1K", "2K", "4K"] | None = Field(default=None, description="apidot only")
    image_urls: list[str] | None = Field(default=None, max_length=MAX_IMAGE_URLS, description="https URLs")
    deadline_s: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_S)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY)
    priority: Priority | None = "interactive"
    callback_url: str | None = None
    metadata: dict[str, Any] | None = None
    fallback: list[ProviderName] | None = None
    tenant: str | None = Field(
        default=None,
        pattern=TENANT_RE.pattern.replace("\\Z", "$"),
        description="whose job: defaults to the token's tenant; only an admin token may name another",
    )


class BatchRequest(BaseModel):
    """``POST /v1/batches``: validated all-or-nothing; items default to priority ``batch``."""

    model_config = ConfigDict(extra="forbid")

    requests: list[JobRequest] = Field(min_length=1, max_length=MAX_BATCH)
    callback_url: str | None = Field(
        default=None,
        description="gets one signed `batch.finished` POST each time every job of the batch has ended"
        " (the rules of a job's `callback_url`)",
    )


class ResultFile(BaseModel):
    """One output image: the upstream URL and our stored copy (every other field null until stored)."""

    url: str | None
    path: str | None = Field(description="where the copy is stored: a path under the results directory, or s3://")
    sha256: str | None = Field(description="hex digest of the stored bytes (the download's ETag)")
    bytes: int | None = Field(description="size of the stored file")
    content_type: str | None = Field(description="read from the bytes: image/png, image/jpeg, image/webp, image/gif")
    width: int | None
    height: int | None
    href: str | None = Field(
        description="GET /v1/jobs/{id}/images/{n}, n being this entry's 0-based place in `result`; "
        "absolute under IMAGEGEN_PUBLIC_URL when that is set"
    )


class JobError(BaseModel):
    """Why a job is held or ended without success (or, as ``last_error``, the latest retryable error)."""

    kind: ErrorKind
    message: str | None
    http_status: int | None


class JobOut(BaseModel):
    """The job JSON (``jobview.job_to_dict``, shared with ``imagegen status --json``)."""

    id: str = Field(description="UUID4")
    batch_id: str | None
    tenant: str = Field(description="whose job it is (the tenant of the token that created it)")
    status: JobStatus
    provider: str
    model: str
    priority: Priority
    request: dict[str, Any] = Field(description="the validated request")
    metadata: dict[str, Any] | None
    idempotency_key: str | None
    upstream_task_id: str | None
    upstream_status: str | None = Field(description="the provider's raw status value")
    progress: int | None
    result: list[ResultFile]
    error: JobError | None
    last_error: JobError | None
    submit_attempts: int
    polls: int
    created_at: str = Field(json_schema_extra=_DATETIME)
    submitted_at: str | None = Field(json_schema_extra=_DATETIME)
    finished_at: str | None = Field(json_schema_extra=_DATETIME)
    deadline_at: str = Field(json_schema_extra=_DATETIME)
    next_attempt_at: str | None = Field(json_schema_extra=_DATETIME)
    queue_position: int | None = Field(
        default=None,
        description="queued jobs of the same provider ahead of this one (approximate; 0: next). Set on "
        "single-job answers (read, wait, events) of queued jobs; null otherwise, lists included",
    )


class JobPage(BaseModel):
    """One page of ``GET /v1/jobs``, newest first; ``next`` is the cursor of the next page (null: the last)."""

    jobs: list[JobOut]
    next: str | None


class BatchCreated(BaseModel):
    """The answer to ``POST /v1/batches``: the batch id and its job ids, in request order."""

    batch_id: str
    jobs: list[str]


class BatchOut(BaseModel):
    """One batch: ``{status: n}`` counts over all its jobs, one page of them, and the cursor of the next."""

    batch_id: str
    counts: dict[str, int]
    callback_url: str | None = Field(description="where `batch.finished` is sent (null: none, or another tenant's)")
    notify_status: str | None = Field(
        description="`batch.finished` delivery: null while jobs are active, then pending, delivered or failed"
    )
    finished_at: str | None = Field(
        description="when every job was found ended (null while the batch is open)", json_schema_extra=_DATETIME
    )
    jobs: list[JobOut]
    next: str | None = Field(description="`?cursor=` for the next page of jobs; null on the last page")


class BatchCanceledOut(BaseModel):
    """``POST /v1/batches/{id}/cancel``: how many jobs this call canceled, and the batch's counts after it."""

    batch_id: str
    canceled: int
    counts: dict[str, int]


class Resumed(BaseModel):
    """``POST /v1/providers/{provider}/resume``: what ``imagegen resume`` prints, as ``message``."""

    provider: str
    message: str = Field(description="whether it was paused, and how many held jobs went back to work")


class Health(BaseModel):
    """``GET /healthz``: ``ok`` is true when both the database and the broker answer."""

    ok: bool
    database: Literal["ok", "unavailable"]
    broker: Literal["ok", "unreachable"]


class Accepted(BaseModel):
    """A webhook delivery was accepted (the work, if any, is queued)."""

    ok: Literal[True] = True


class Message(BaseModel):
    """An error with a human-readable reason."""

    detail: str


class FieldProblem(BaseModel):
    """One invalid field, FastAPI-style: ``loc`` starts with ``body`` and names the field."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """A 422 answer: every invalid field at once."""

    detail: list[FieldProblem]
