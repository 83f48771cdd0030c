"""Tenant isolation on the intake routes: whose request a body is, and whose job an id names.

Another tenant's job or batch is answered exactly like one that does not exist (404, never 403), so a
token cannot learn which ids exist beyond its own tenant.
"""

from __future__ import annotations

import dataclasses

from fastapi import HTTPException, status

from imagegen.api.auth import Caller
from imagegen.api.validation import Loc, problem
from imagegen.ids import is_job_id
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job


def not_found(what: str) -> HTTPException:
    """The 404 of an unknown job or batch (and of another tenant's)."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")


def own_job(rt: Runtime, caller: Caller, job_id: str) -> Job:
    """The job ``job_id`` names, if the caller may see it; else the 404 of an unknown job."""
    if not is_job_id(job_id):
        raise not_found("job")
    with rt.read_session() as s:
        job = repo.get_job(s, job_id)
    if job is None or not caller.owns(job.tenant):
        raise not_found("job")
    return job


def tenant_problem(request: ImageRequest, caller: Caller, loc: Loc) -> dict[str, object] | None:
    """The 422 entry for a body ``tenant`` the caller may not use (only an admin token names another)."""
    if request.tenant is None or caller.owns(request.tenant):
        return None
    return problem((*loc, "tenant"), "tenant: must be your token's tenant (or left out)")


def as_caller(request: ImageRequest, caller: Caller) -> ImageRequest:
    """``request`` with the caller's tenant when it names none (an allowed ``tenant`` is kept)."""
    if request.tenant is not None:
        return request
    return dataclasses.replace(request, tenant=caller.tenant)
