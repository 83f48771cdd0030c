"""Batch routes: ``POST /v1/batches``, ``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel``.

A batch belongs to the tenant that created it: another tenant's token gets the 404 of an unknown
batch (the jobs of a batch are all its creator's, unless an admin named tenants per item; then each
token sees its own tenant's part).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from imagegen.api.auth import Caller, CallerDep
from imagegen.api.jobs import CONFLICT, INVALID, NOT_FOUND, Body, body_schema, conflict
from imagegen.api.paging import Cursor, after, page
from imagegen.api.schemas import MAX_BATCH, BatchCanceledOut, BatchCreated, BatchOut, BatchRequest
from imagegen.api.state import PublisherDep, RuntimeDep, SettingsDep
from imagegen.api.tenancy import as_caller, not_found, tenant_problem
from imagegen.api.validation import field_problems, invalid, problem
from imagegen.errors import IdempotencyConflict, RequestInvalid
from imagegen.ids import is_job_id
from imagegen.jobview import iso, job_to_dict
from imagegen.ops import actions
from imagegen.producer import create_batch, publish_submits
from imagegen.request import ImageRequest, callback_url_problem
from imagegen.store import repo
from imagegen.store.models import Batch

router = APIRouter(prefix="/v1")


def _batch_requests(body: Any, allow_private_urls: bool, caller: Caller) -> tuple[list[ImageRequest], str | None]:
    """Validate every item and the ``callback_url`` (all-or-nothing): the requests and the callback URL,
    or a 422 listing every bad item and field."""
    if not isinstance(body, dict):
        raise invalid([problem(("body",), "body: must be a JSON object with a `requests` list")])
    problems = [problem(("body", str(k)), f"{k}: unknown field") for k in body if k not in _BODY_FIELDS]
    callback_url = body.get("callback_url")
    if callback_url is not None:
        bad_url = callback_url_problem(callback_url, allow_private_urls=allow_private_urls)
        if bad_url:
            problems.append(problem(("body", "callback_url"), f"callback_url: {bad_url}"))
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
    return valid, callback_url


_BODY_FIELDS = ("requests", "callback_url")


@router.post(
    "/batches",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchCreated,
    summary="Queue many requests under one batch id",
    responses={409: CONFLICT, 422: INVALID},
    openapi_extra=body_schema(BatchRequest),
)
def post_batch(
    body: Body, rt: RuntimeDep, publisher: PublisherDep, settings: SettingsDep, caller: CallerDep
) -> JSONResponse:
    """All-or-nothing: one invalid item → 422 listing every bad item, nothing written or published.

    ``callback_url`` gets one signed ``batch.finished`` notification each time every job has ended."""
    requests, callback_url = _batch_requests(body, settings.http.allow_private_urls, caller)
    try:
        batch_id, jobs = create_batch(rt, requests, callback_url=callback_url)
    except IdempotencyConflict as exc:
        raise conflict(exc) from None
    # Jobs of a repeated idempotency key belong to their first batch; their submit went out then.
    publish_submits(publisher, [j for j in jobs if j.created])
    content = {"batch_id": batch_id, "jobs": [j.id for j in jobs]}
    return JSONResponse(content, status_code=status.HTTP_202_ACCEPTED)


#: A batch page may hold the whole batch (the default), unlike a ``/v1/jobs`` page.
BatchLimit = Annotated[int, Query(ge=1, le=MAX_BATCH, description=f"Jobs per page (default and at most {MAX_BATCH})")]


@router.get(
    "/batches/{batch_id}", response_model=BatchOut, summary="One batch", responses={404: NOT_FOUND, 422: INVALID}
)
def get_batch(
    batch_id: str,
    rt: RuntimeDep,
    settings: SettingsDep,
    caller: CallerDep,
    limit: BatchLimit = MAX_BATCH,
    cursor: Cursor = None,
) -> JSONResponse:
    """Counts by status of the whole batch and one page of its jobs (newest first); ``next`` pages on.

    Without ``limit`` the page is the whole batch, as this route answered before it was paginated.

    Only the caller's tenant's jobs count (an admin's: all). The batch's ``callback_url`` and the state
    of its ``batch.finished`` notification are shown to its own tenant and to admins (null otherwise).
    """
    key = after(cursor)
    if not is_job_id(batch_id):
        raise not_found("batch")
    with rt.read_session() as s:
        counts = repo.count_by_status(s, batch_id=batch_id, tenant=caller.scope)
        found = repo.list_jobs(s, batch_id=batch_id, tenant=caller.scope, after=key, limit=limit + 1) if counts else []
        row = repo.get_batch(s, batch_id) if counts else None
    if not counts:
        raise not_found("batch")
    jobs, next_cursor = page(found, limit)
    views = [job_to_dict(j, public_url=settings.imagegen_public_url) for j in jobs]
    content = {"batch_id": batch_id, "counts": counts, **_notification(row, caller), "jobs": views, "next": next_cursor}
    return JSONResponse(content)


def _notification(row: Batch | None, caller: Caller) -> dict[str, Any]:
    """The batch's callback and notification state, if ``caller`` may see them (its tenant, or an admin)."""
    if row is None or not caller.owns(row.tenant):
        return {"callback_url": None, "notify_status": None, "finished_at": None}
    return {"callback_url": row.callback_url, "notify_status": row.notify_status, "finished_at": iso(row.finished_at)}


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=BatchCanceledOut,
    summary="Cancel every job of a batch that has not ended",
    responses={404: NOT_FOUND},
)
def cancel_batch(batch_id: str, rt: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """Cancel the batch's active jobs (the caller's tenant's); ended ones keep their ending. 404: no such batch."""
    if not is_job_id(batch_id):
        raise not_found("batch")
    done = actions.cancel_batch(rt, batch_id, tenant=caller.scope)
    if done is None:
        raise not_found("batch")
    return JSONResponse({"batch_id": batch_id, "canceled": done.canceled, "counts": done.counts})
