"""Intake routes: ``/v1/jobs`` and ``/v1/batches`` (README, 'Using it')."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import JSONResponse

from imagegen.api.auth import Caller, CallerDep
from imagegen.api.paging import DEFAULT_PAGE, Cursor, Limit, after, page, utc_bound
from imagegen.api.schemas import (
    MAX_BATCH,
    BatchCreated,
    BatchOut,
    BatchRequest,
    JobOut,
    JobPage,
    JobRequest,
    Message,
    ProviderName,
    ValidationProblem,
)
from imagegen.api.state import PublisherDep, RuntimeDep, SettingsDep
from imagegen.api.tenancy import as_caller, not_found, own_job, tenant_problem
from imagegen.api.validation import field_problems, invalid, json_body, problem
from imagegen.errors import ErrorKind, IdempotencyConflict, RequestInvalid
from imagegen.ids import is_job_id
from imagegen.jobview import job_to_dict
from imagegen.producer import create_batch, create_job, publish_submits
from imagegen.request import TENANT_RE, ImageRequest
from imagegen.store import repo
from imagegen.store.transitions import JobStatus

router = APIRouter(prefix="/v1")

Body = Annotated[Any, Depends(json_body)]
_NOT_FOUND = {"model": Message, "description": "No such job or batch"}
_INVALID = {"model": ValidationProblem, "description": "Invalid request; the fields are named in `loc`"}
_CONFLICT = {"model": Message, "description": "The idempotency key names a job created for a different request"}


def _conflict(exc: IdempotencyConflict) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=str(exc))


def _body_schema(model: type[JobRequest | BatchRequest]) -> dict[str, Any]:
    # The body is validated by ImageRequest.from_dict, not by FastAPI: document it by hand.
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    summary="Queue one image request",
    responses={
        200: {"model": JobOut, "description": "The existing job of a repeated idempotency key"},
        409: _CONFLICT,
        422: _INVALID,
    },
    openapi_extra=_body_schema(JobRequest),
)
def post_job(
    body: Body, rt: RuntimeDep, publisher: PublisherDep, settings: SettingsDep, caller: CallerDep
) -> JSONResponse:
    """Validate, write the ``queued`` row, then publish its submit. A repeated idempotency key → 200 + that job.

    The job is the token's tenant's; a body ``tenant`` naming another is a 422 unless the token is an admin's.
    """
    try:
        request = ImageRequest.from_dict(body, allow_private_urls=settings.http.allow_private_urls)
    except RequestInvalid as exc:
        raise invalid(field_problems(("body",), exc.errors)) from None
    wrong_tenant = tenant_problem(request, caller, ("body",))
    if wrong_tenant:
        raise invalid([wrong_tenant])
    request = as_caller(request, caller)
    try:
        job, created = create_job(rt, request)
    except IdempotencyConflict as exc:
        raise _conflict(exc) from None
    if created:
        publish_submits(publisher, [job])
    return JSONResponse(job_to_dict(job), status_code=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


TenantFilter = Annotated[
    str | None,
    Query(pattern=TENANT_RE.pattern.replace("\\Z", "$"), description="admin tokens; others see their own only"),
]
CreatedBound = Annotated[datetime | None, Query(description="ISO 8601 (without an offset: UTC)")]


@router.get("/jobs", response_model=JobPage, summary="List jobs, newest first", responses={422: _INVALID})
def list_jobs(
    rt: RuntimeDep,
    caller: CallerDep,
    status: JobStatus | None = None,
    provider: ProviderName | None = None,
    batch_id: Annotated[str | None, Query(max_length=36)] = None,
    error_kind: ErrorKind | None = None,
    tenant: TenantFilter = None,
    created_after: CreatedBound = None,
    created_before: CreatedBound = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> JSONResponse:
    """The caller's jobs (an admin's: every tenant's, or ``tenant``'s), filtered; ``next`` pages on.

    A tenant token filtering on another tenant gets an empty list: filters narrow what it may see.
    """
    key = after(cursor)
    if tenant is not None and not caller.owns(tenant):
        return JSONResponse({"jobs": [], "next": None})
    with rt.read_session() as s:
        found = repo.list_jobs(
            s,
            status=status.value if status else None,
            provider=provider,
            batch_id=batch_id,
            error_kind=error_kind.value if error_kind else None,
            created_after=utc_bound(created_after, "created_after"),
            created_before=utc_bound(created_before, "created_before"),
            tenant=tenant if tenant is not None else caller.scope,
            after=key,
            limit=limit + 1,
        )
    jobs, next_cursor = page(found, limit)
    return JSONResponse({"jobs": [job_to_dict(j) for j in jobs], "next": next_cursor})


@router.get("/jobs/{job_id}", response_model=JobOut, summary="One job", responses={404: _NOT_FOUND})
def get_job(job_id: str, rt: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """The job JSON; 404 for an unknown id (or one that is not a UUID, or another tenant's job)."""
    return JSONResponse(job_to_dict(own_job(rt, caller, job_id)))


def _batch_requests(body: Any, allow_private_urls: bool, caller: Caller) -> list[ImageRequest]:
    """Validate every item (all-or-nothing): the requests, or a 422 listing every bad item and field."""
    if not isinstance(body, dict):
        raise invalid([problem(("body",), "body: must be a JSON object with a `requests` list")])
    problems = [problem(("body", str(k)), f"{k}: unknown field") for k in body if k != "requests"]
    items = body.get("requests")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        problems.append(problem(("body", "requests"), f"requests: must be a list of 1 to {MAX_BATCH} requests"))
        raise invalid(problems)
    valid: list[ImageRequest] = []
    for i, item in enumerate(items):
        try:
            # Batch items default to the batch queue, like `imagegen batch`.
            request = ImageRequest.from_dict(item, allow_private_urls=allow_private_urls, priority="batch")
        except RequestInvalid as exc:
            problems += field_problems(("body", "requests", i), exc.errors)
            continue
        wrong_tenant = tenant_problem(request, caller, ("body", "requests", i))
        if wrong_tenant:
            problems.append(wrong_tenant)
        valid.append(as_caller(request, caller))
    if problems:
        raise invalid(problems)
    return valid


@router.post(
    "/batches",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchCreated,
    summary="Queue many requests under one batch id",
    responses={409: _CONFLICT, 422: _INVALID},
    openapi_extra=_body_schema(BatchRequest),
)
def post_batch(
    body: Body, rt: RuntimeDep, publisher: PublisherDep, settings: SettingsDep, caller: CallerDep
) -> JSONResponse:
    """All-or-nothing: one invalid item → 422 listing every bad item, nothing written or published."""
    requests = _batch_requests(body, settings.http.allow_private_urls, caller)
    try:
        batch_id, jobs = create_batch(rt, requests)
    except IdempotencyConflict as exc:
        raise _conflict(exc) from None
    # Jobs of a repeated idempotency key belong to their first batch; their submit went out then.
    publish_submits(publisher, [j for j in jobs if j.batch_id == batch_id])
    content = {"batch_id": batch_id, "jobs": [j.id for j in jobs]}
    return JSONResponse(content, status_code=status.HTTP_202_ACCEPTED)


@router.get("/batches/{batch_id}", response_model=BatchOut, summary="One batch", responses={404: _NOT_FOUND})
def get_batch(batch_id: str, rt: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """Counts by status and every job of the batch (newest first); only the caller's tenant's jobs count."""
    if not is_job_id(batch_id):
        raise not_found("batch")
    with rt.read_session() as s:
        counts = repo.count_by_status(s, batch_id=batch_id, tenant=caller.scope)
        jobs = repo.list_jobs(s, batch_id=batch_id, tenant=caller.scope, limit=MAX_BATCH) if counts else []
    if not counts:
        raise not_found("batch")
    return JSONResponse({"batch_id": batch_id, "counts": counts, "jobs": [job_to_dict(j) for j in jobs]})
