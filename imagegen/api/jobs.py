"""Intake routes: ``/v1/jobs`` and ``/v1/batches`` (README, 'Using it')."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import JSONResponse

from imagegen.api.schemas import (
    MAX_BATCH,
    BatchCreated,
    BatchOut,
    BatchRequest,
    JobOut,
    JobRequest,
    Message,
    ValidationProblem,
)
from imagegen.api.state import PublisherDep, RuntimeDep, SettingsDep
from imagegen.api.validation import field_problems, invalid, json_body, problem
from imagegen.errors import IdempotencyConflict, RequestInvalid
from imagegen.ids import is_job_id
from imagegen.jobview import job_to_dict
from imagegen.producer import create_batch, create_job, publish_submits
from imagegen.request import ImageRequest
from imagegen.store import repo

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


def _not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")


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
def post_job(body: Body, rt: RuntimeDep, publisher: PublisherDep, settings: SettingsDep) -> JSONResponse:
    """Validate, write the ``queued`` row, then publish its submit. A repeated idempotency key → 200 + that job."""
    try:
        request = ImageRequest.from_dict(body, allow_private_urls=settings.http.allow_private_urls)
    except RequestInvalid as exc:
        raise invalid(field_problems(("body",), exc.errors)) from None
    try:
        job, created = create_job(rt, request)
    except IdempotencyConflict as exc:
        raise _conflict(exc) from None
    if created:
        publish_submits(publisher, [job])
    return JSONResponse(
        job_to_dict(job, public_url=settings.imagegen_public_url),
        status_code=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
    )


@router.get("/jobs/{job_id}", response_model=JobOut, summary="One job", responses={404: _NOT_FOUND})
def get_job(job_id: str, rt: RuntimeDep, settings: SettingsDep) -> JSONResponse:
    """The job JSON; 404 for an unknown id (or one that is not a UUID)."""
    if not is_job_id(job_id):
        raise _not_found("job")
    with rt.read_session() as s:
        job = repo.get_job(s, job_id)
    if job is None:
        raise _not_found("job")
    return JSONResponse(job_to_dict(job, public_url=settings.imagegen_public_url))


def _batch_requests(body: Any, allow_private_urls: bool) -> list[ImageRequest]:
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
            valid.append(ImageRequest.from_dict(item, allow_private_urls=allow_private_urls, priority="batch"))
        except RequestInvalid as exc:
            problems += field_problems(("body", "requests", i), exc.errors)
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
def post_batch(body: Body, rt: RuntimeDep, publisher: PublisherDep, settings: SettingsDep) -> JSONResponse:
    """All-or-nothing: one invalid item → 422 listing every bad item, nothing written or published."""
    requests = _batch_requests(body, settings.http.allow_private_urls)
    try:
        batch_id, jobs = create_batch(rt, requests)
    except IdempotencyConflict as exc:
        raise _conflict(exc) from None
    # Jobs of a repeated idempotency key belong to their first batch; their submit went out then.
    publish_submits(publisher, [j for j in jobs if j.batch_id == batch_id])
    content = {"batch_id": batch_id, "jobs": [j.id for j in jobs]}
    return JSONResponse(content, status_code=status.HTTP_202_ACCEPTED)


@router.get("/batches/{batch_id}", response_model=BatchOut, summary="One batch", responses={404: _NOT_FOUND})
def get_batch(batch_id: str, rt: RuntimeDep, settings: SettingsDep) -> JSONResponse:
    """Counts by status and every job of the batch (newest first)."""
    if not is_job_id(batch_id):
        raise _not_found("batch")
    with rt.read_session() as s:
        counts = repo.count_by_status(s, batch_id=batch_id)
        jobs = repo.list_jobs(s, batch_id=batch_id, limit=MAX_BATCH) if counts else []
    if not counts:
        raise _not_found("batch")
    return JSONResponse(
        {
            "batch_id": batch_id,
            "counts": counts,
            "jobs": [job_to_dict(j, public_url=settings.imagegen_public_url) for j in jobs],
        }
    )
