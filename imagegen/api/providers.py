"""Provider routes: ``POST /v1/providers/{provider}/resume`` (admin tokens only; README, 'HTTP API').

A provider key is shared by every tenant, so lifting its pause is an operator's act: a valid tenant
token gets 403 (a missing or wrong one got 401 from the intake auth).
"""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from imagegen.api.auth import AdminDep
from imagegen.api.schemas import Message, Resumed
from imagegen.api.state import RuntimeDep
from imagegen.constants import PROVIDERS
from imagegen.errors import UnknownProvider
from imagegen.jobs import pauses

router = APIRouter(prefix="/v1")


@router.post(
    "/providers/{provider}/resume",
    response_model=Resumed,
    summary="Unpause a provider key and release its held jobs (admin)",
    responses={
        403: {"model": Message, "description": "The token is not an admin token"},
        404: {"model": Message, "description": "No such provider"},
    },
)
def resume_provider(provider: str, rt: RuntimeDep, _: AdminDep) -> JSONResponse:
    """``imagegen resume --provider``: lift the pause; held jobs go back to work (the reconciler publishes)."""
    try:
        if provider not in PROVIDERS:  # nor is any such text ever sent to the database
            raise UnknownProvider(provider)
        message = pauses.resume(rt, provider)
    except UnknownProvider:
        return JSONResponse({"detail": "provider not found"}, status_code=status.HTTP_404_NOT_FOUND)
    return JSONResponse({"provider": provider, "message": message})
