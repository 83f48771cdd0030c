"""``POST /webhooks/{provider}``: upstream callbacks, handed to the core in ``imagegen.webhooks.inbound``.

The route only moves bytes: the provider and token (query string) are checked before the body is read,
then the core verifies the signature, finds the job, and returns the message to publish (a forced poll
that re-fetches the status in a worker). So the answer is fast, and a provider's retry of a slow answer
cannot pile up upstream calls here.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse

from imagegen.api.schemas import Accepted, Message
from imagegen.api.state import PublisherDep, ReceiverDep, RuntimeDep, TokenCheckDep
from imagegen.errors import ImagegenError, UnknownProvider, WebhookRejected

log = logging.getLogger(__name__)
router = APIRouter()

#: The statuses the core rejects with; anything else is answered 400 (never a 5xx: a provider retries
#: 5xx answers, and retrying a delivery we cannot understand only adds load).
REJECT_STATUSES = frozenset({400, 401, 404})
_EXAMPLE_JOB = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


ProviderPath = Annotated[str, Path(description="The provider the callback URL names", examples=["apidot"])]
TokenQuery = Annotated[
    str | None, Query(description="The per-job token of the callback URL", examples=[f"{_EXAMPLE_JOB}.q1w2e3r4t5"])
]


async def raw_body(
    request: Request, provider: ProviderPath, rt: RuntimeDep, check: TokenCheckDep, token: TokenQuery = None
) -> bytes:
    """The body exactly as sent (never parsed here), read only once the provider and token are valid:
    a caller without a token cannot make us read anything (bodies are capped at 64 KiB besides)."""
    try:
        check(rt, provider, token)
    except WebhookRejected as exc:
        code = exc.status_code if exc.status_code in REJECT_STATUSES else status.HTTP_400_BAD_REQUEST
        raise HTTPException(code, exc.message, headers={"Connection": "close"}) from None
    except UnknownProvider as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc) or "unknown provider") from None
    return await request.body()


def _rejected(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status_code)


@router.post(
    "/webhooks/{provider}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    summary="Upstream task callbacks (e.g. APIDot)",
    responses={
        400: {"model": Message, "description": "Malformed delivery"},
        401: {"model": Message, "description": "Bad or stale signature, or bad token"},
        404: {"model": Message, "description": "Unknown provider or task"},
    },
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": {}}}}},
)
def post_webhook(
    provider: ProviderPath,
    body: Annotated[bytes, Depends(raw_body)],
    request: Request,
    rt: RuntimeDep,
    publisher: PublisherDep,
    receive: ReceiverDep,
    token: TokenQuery = None,
) -> JSONResponse:
    """Verify and acknowledge one delivery: 202 ``{"ok": true}``, or 400/401/404 ``{"detail": reason}``."""
    try:
        accepted = receive(rt, provider, token=token, headers=request.headers, body=body)
    except WebhookRejected as exc:
        code = exc.status_code if exc.status_code in REJECT_STATUSES else status.HTTP_400_BAD_REQUEST
        return _rejected(code, exc.message)
    except UnknownProvider as exc:
        return _rejected(status.HTTP_404_NOT_FOUND, str(exc) or "unknown provider")
    except ImagegenError as exc:  # any other refusal of the core is about this delivery, not an outage
        log.warning("webhook core raised %r; answering 400", exc)
        return _rejected(status.HTTP_400_BAD_REQUEST, str(exc) or "rejected")
    if accepted.step is not None:
        try:
            publisher.publish(accepted.step)
        except Exception:  # broker down: like publish_submits, the durable row and the reconciler suffice
            log.warning("could not publish %s for job %s", accepted.step.task, accepted.job_id, exc_info=True)
    return JSONResponse({"ok": True}, status_code=status.HTTP_202_ACCEPTED)
