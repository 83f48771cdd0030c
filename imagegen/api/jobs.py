"""Job routes: ``/v1/jobs`` (queue, list, read, cancel, retry), and what the batch routes share (README, 'HTTP API')."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from config.settings import Settings
from imagegen.api.auth import Caller, CallerDep
from imagegen.api.paging import DEFAULT_PAGE, CreatedBound, Cursor, Limit, after, created_bound, page
from imagegen.api.schemas import (
    BatchRequest,
    JobOut,
    JobPage,
    JobRequest,
    Message,
    ProviderName,
    ValidationProblem,
)
from imagegen.api.state import FeedDep, PublisherDep, RuntimeDep, SettingsDep
from imagegen.api.tenancy import as_caller, not_found, own_job, tenant_problem
from imagegen.api.validation import field_problems, invalid, json_body
from imagegen.api.waiting import MAX_WAIT_S, preferred_wait, settle, settled, view
from imagegen.errors import ErrorKind, IdempotencyConflict, JobNotFound, RequestInvalid
from imagegen.jobview import job_to_dict
from imagegen.messages import Publisher, Step
from imagegen.ops import actions
from imagegen.producer import create_job, publish_submits
from imagegen.request import TENANT_RE, ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1")

Body = Annotated[Any, Depends(json_body)]
NOT_FOUND = {"model": Message, "description": "No such job or batch"}
INVALID = {"model": ValidationProblem, "description": "Invalid request; the fields are named in `loc`"}
CONFLICT = {"model": Message, "description": "The idempotency key names a job created for a different request"}


def conflict(exc: IdempotencyConflict) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=str(exc))


def body_schema(model: type[JobRequest | BatchRequest]) -> dict[str, Any]:
    # The body is validated by ImageRequest.from_dict, not by FastAPI: document it by hand.
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


PreferHeader = Annotated[
    str | None,
    Header(description=f"`wait=N` (N ≤ {MAX_WAIT_S}): answer once the job has ended or is held, or after N s"),
]


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    summary="Queue one image request",
    responses={
        200: {
            "model": JobOut,
            "description": "The existing job of a repeated idempotency key, or (with `Prefer:"
            " wait`) the job once it ended or is held",
        },
        409: CONFLICT,
        422: INVALID,
    },
    openapi_extra=body_schema(JobRequest),
)
async def post_job(
    http_request: Request,
    body: Body,
    rt: RuntimeDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    caller: CallerDep,
    feed: FeedDep,
    prefer: PreferHeader = None,
) -> JSONResponse:
    """Validate, write the ``queued`` row, then publish its submit. A repeated idempotency key → 200 + that job.

    The job is the token's tenant's; a body ``tenant`` naming another is a 422 unless the token is an admin's.
    With ``Prefer: wait=N`` the answer waits up to N s: 200 with the job once it ended or is held, else 202
    with ``Location``. The wait holds no thread: the worker's commit wakes it (``api.waiting``).
    """
    job, created = await run_in_threadpool(queue_one, body, rt, publisher, settings, caller)
    wait = preferred_wait(prefer)
    if wait is None:
        content = await run_in_threadpool(view, rt, job, settings.imagegen_public_url)
        return JSONResponse(content, status_code=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
    try:
        jobs = await settle(feed, rt, [job.id], wait, gone=http_request.is_disconnected)
    except Exception:  # the job exists: whatever broke the wait, the caller must learn its id (a 202)
        log.warning("the wait on job %s failed; answering 202", job.id, exc_info=True)
        jobs = []
    job = jobs[0] if jobs else job
    done = settled(job)
    try:
        content = await run_in_threadpool(view, rt, job, settings.imagegen_public_url)
    except Exception:  # the database went away meanwhile: the row we have, without its queue position
        content = job_to_dict(job, public_url=settings.imagegen_public_url)
    headers = {"Preference-Applied": f"wait={wait}"}
    if not done:
        headers["Location"] = f"/v1/jobs/{job.id}"
    return JSONResponse(content, status_code=200 if done else 202, headers=headers)


def queue_one(body: Any, rt: Runtime, publisher: Publisher, settings: Settings, caller: Caller) -> tuple[Job, bool]:
    """Validate ``body`` as the caller's request, insert its job and publish the submit: ``(job, created)``."""
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
        raise conflict(exc) from None
    if created:
        publish_submits(publisher, [job])
    return job, created


TenantFilter = Annotated[
    str | None,
    Query(pattern=TENANT_RE.pattern.replace("\\Z", "$"), description="admin tokens; others see their own only"),
]


@router.get("/jobs", response_model=JobPage, summary="List jobs, newest first", responses={422: INVALID})
def list_jobs(
    rt: RuntimeDep,
    settings: SettingsDep,
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
            created_after=created_bound(created_after, "created_after"),
            created_before=created_bound(created_before, "created_before"),
            tenant=tenant if tenant is not None else caller.scope,
            after=key,
            limit=limit + 1,
        )
    jobs, next_cursor = page(found, limit)
    public_url = settings.imagegen_public_url
    return JSONResponse({"jobs": [job_to_dict(j, public_url=public_url) for j in jobs], "next": next_cursor})


@router.get("/jobs/{job_id}", response_model=JobOut, summary="One job", responses={404: NOT_FOUND})
def get_job(job_id: str, rt: RuntimeDep, settings: SettingsDep, caller: CallerDep) -> JSONResponse:
    """The job JSON; 404 for an unknown id (or one that is not a UUID, or another tenant's job)."""
    return JSONResponse(view(rt, own_job(rt, caller, job_id), settings.imagegen_public_url))


_REFUSED = {"model": Message, "description": "The job's status does not allow this action (the reason says why)"}


def _publish(publisher: Publisher, steps: Sequence[Step]) -> None:
    """Publish an action's messages after its commit; a broker outage is logged, the reconciler releases the row."""
    for step in steps:
        try:
            publisher.publish(step)
        except Exception:  # broker down: the durable row is enough
            log.warning("could not publish %s for job %s; the reconciler will release it", step.task, step.job_id)


def _act(
    action: Callable[[Runtime, str], actions.ActionResult],
    job_id: str,
    rt: Runtime,
    publisher: Publisher,
    settings: Settings,
    caller: Caller,
) -> JSONResponse:
    own_job(rt, caller, job_id)  # another tenant's job: the 404 of an unknown one, and nothing done
    try:
        result = action(rt, job_id)
    except JobNotFound:  # deleted (purged) in between
        raise not_found("job") from None
    if not result.ok:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=result.reason)
    _publish(publisher, result.steps)
    return JSONResponse(job_to_dict(own_job(rt, caller, job_id), public_url=settings.imagegen_public_url))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job that has not ended",
    responses={404: NOT_FOUND, 409: _REFUSED},
)
def cancel_job(
    job_id: str, rt: RuntimeDep, publisher: PublisherDep, settings: SettingsDep, caller: CallerDep
) -> JSONResponse:
    """The canceled job; 409 if it had already ended (``imagegen cancel``)."""
    return _act(actions.cancel, job_id, rt, publisher, settings, caller)


@router.post(
    "/jobs/{job_id}/retry",
    response_model=JobOut,
    summary="Queue a failed, expired or canceled job again",
    responses={404: NOT_FOUND, 409: _REFUSED},
)
def retry_job(
    job_id: str, rt: RuntimeDep, publisher: PublisherDep, settings: SettingsDep, caller: CallerDep
) -> JSONResponse:
    """The requeued job (a new upstream submit, fresh budgets and deadline); 409 for any other status."""
    return _act(actions.retry, job_id, rt, publisher, settings, caller)
