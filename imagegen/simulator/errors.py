"""APIDot-style error bodies and the rendering of injected faults.

Rendering returns the response together with what the request record needs (the body's
``code`` field and the Retry-After header), so handlers never re-parse their own output.
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass

from fastapi.responses import HTMLResponse, JSONResponse, Response

from .directives import Fault


@dataclass(frozen=True)
class ApiError:
    """An APIDot error: ``{"code": N, "error": {"message", "type"}}`` (``code`` omitted for 402)."""

    status: int
    message: str
    type: str
    with_code: bool = True


@dataclass(frozen=True)
class Rendered:
    """A response plus the facts the request record keeps about it."""

    response: Response
    code: int | None
    retry_after: str | None


UNAUTHORIZED = ApiError(401, "Unauthorized - Invalid API key", "authentication_error")
NOT_FOUND = ApiError(404, "task not found", "not_found")
MODERATION = ApiError(400, "Your request was rejected by the safety system", "content_policy_violation")

_BY_STATUS: dict[int, ApiError] = {
    400: ApiError(400, "invalid request", "invalid_request_error"),
    401: UNAUTHORIZED,
    # The only documented 402 body has no "code" field.
    402: ApiError(402, "Insufficient credits to process this request", "insufficient_credits", False),
    403: ApiError(403, "Forbidden", "permission_error"),
    429: ApiError(429, "rate limited", "rate_limited"),
}


def invalid_request(message: str) -> ApiError:
    """A 400 ``invalid_request_error`` with a specific message."""
    return ApiError(400, message, "invalid_request_error")


def error_for_status(status: int) -> ApiError:
    """The canned error body for an injected HTTP status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ApiError(status, "upstream error", "server_error")


def render_error(error: ApiError, *, detail: bool, retry_after: str | None = None) -> Rendered:
    """Render ``error`` as JSON; ``detail`` switches to FastAPI's ``{"detail": message}`` style."""
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    if detail:
        return Rendered(JSONResponse({"detail": error.message}, error.status, headers), None, retry_after)
    body: dict[str, object] = {"error": {"message": error.message, "type": error.type}}
    code: int | None = None
    if error.with_code:
        code = error.status
        body = {"code": code, **body}
    return Rendered(JSONResponse(body, error.status, headers), code, retry_after)


def retry_after_value(fault: Fault, now: float) -> str | None:
    """The Retry-After header a 429 fault carries (None: no header)."""
    if fault.retry_after == "none":
        return None
    if fault.retry_after == "date":
        # HTTP-dates have 1 s resolution: round up so the wait is never shorter than 2 s.
        return email.utils.formatdate(math.ceil(now) + 2, usegmt=True)
    return str(fault.retry_after_s)


def render_fault(fault: Fault, *, detail: bool, now: float) -> Rendered:
    """Render an injected fault (HTTP status, ``code500``, ``malformed`` or ``moderation``)."""
    if fault.kind == "malformed":
        return Rendered(HTMLResponse("<html>oops", 200), None, None)
    if fault.kind == "code500":
        # HTTP 200 but an error code in the body: clients must check "code", not just the status.
        body = {"code": 500, "error": {"message": "internal", "type": "server_error"}}
        return Rendered(JSONResponse(body, 200), 500, None)
    if fault.kind == "moderation":
        return render_error(MODERATION, detail=detail)
    status = fault.http_status or 500
    retry_after = retry_after_value(fault, now) if status == 429 else None
    return render_error(error_for_status(status), detail=detail, retry_after=retry_after)
