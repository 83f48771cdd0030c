"""Error bodies (APIDot style, and OpenAI style for the openai and image2 fakes) and injected faults.

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
    error_code: str | None = None  # OpenAI-style string code, for the record


UNAUTHORIZED = ApiError(401, "Unauthorized - Invalid API key", "authentication_error")
NOT_FOUND = ApiError(404, "task not found", "not_found")
CONFLICT = ApiError(409, "a request with this idempotency key is in progress", "conflict")
MODERATION = ApiError(400, "Your request was rejected by the safety system", "content_policy_violation")

_BY_STATUS: dict[int, ApiError] = {
    400: ApiError(400, "invalid request", "invalid_request_error"),
    401: UNAUTHORIZED,
    # The only documented 402 body has no "code" field.
    402: ApiError(402, "Insufficient credits to process this request", "insufficient_credits", False),
    403: ApiError(403, "Forbidden", "permission_error"),
    404: NOT_FOUND,
    409: CONFLICT,
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
    if fault.retry_after == "pastdate":
        # A server clock running behind ours: the date has already passed when it arrives.
        return email.utils.formatdate(math.floor(now) - 60, usegmt=True)
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
    if fault.kind == "quota":
        # APIDot's account-level billing stop is its 402 (OpenAI's is a 429 insufficient_quota).
        return render_error(_BY_STATUS[402], detail=detail)
    status = fault.http_status or 500
    retry_after = retry_after_value(fault, now) if status == 429 else None
    return render_error(error_for_status(status), detail=detail, retry_after=retry_after)


# --- OpenAI style (openai and image2 fakes) -------------------------------------------------------


@dataclass(frozen=True)
class OpenAIError:
    """An OpenAI error: ``{"error": {"message", "type", "param", "code"}}``, as the real API sends."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None


OPENAI_UNAUTHORIZED = OpenAIError(
    401,
    "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    "invalid_request_error",
    "invalid_api_key",
)
OPENAI_MODERATION = OpenAIError(
    400,
    "Your request was rejected by the safety system. If you believe this is an error, contact us at "
    "help.openai.com and include the request ID req_sim. safety_violations=[sexual].",
    "image_generation_user_error",
    "moderation_blocked",
)
OPENAI_QUOTA = OpenAIError(
    429,
    "You exceeded your current quota, please check your plan and billing details.",
    "insufficient_quota",
    "insufficient_quota",
)
_OPENAI_BY_STATUS: dict[int, OpenAIError] = {
    400: OpenAIError(400, "Invalid request.", "invalid_request_error"),
    401: OPENAI_UNAUTHORIZED,
    402: OpenAIError(
        402, "Insufficient credits to process this request.", "insufficient_credits", "insufficient_credits"
    ),
    403: OpenAIError(
        403, "Country, region, or territory not supported", "request_forbidden", "unsupported_country_region_territory"
    ),
    429: OpenAIError(
        429,
        "Rate limit exceeded for images per minute in organization org-sim. Limit: 5/1min. Current: 6/1min.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: OpenAIError(500, "The server had an error while processing your request. Sorry about that!", "server_error"),
    503: OpenAIError(
        503, "The engine is currently overloaded, please try again later.", "server_error", "server_is_overloaded"
    ),
}


def openai_invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    """A 400 ``invalid_request_error`` naming the offending ``param``."""
    return OpenAIError(400, message, "invalid_request_error", code, param)


def render_openai_error(error: OpenAIError, headers: dict[str, str] | None = None) -> Rendered:
    """Render ``error`` as an OpenAI error body."""
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    retry_after = (headers or {}).get("retry-after")
    return Rendered(JSONResponse(body, error.status, headers), None, retry_after, error.code)


def openai_rate_limit_headers(fault: Fault, now: float) -> dict[str, str]:
    """``retry-after-ms`` + ``retry-after`` (unless ``:noheader``; a date has no ms twin) and ``x-ratelimit-*``."""
    headers = {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{fault.retry_after_s}s",  # a Go duration, like OpenAI's
    }
    value = retry_after_value(fault, now)
    if value is not None:
        headers["retry-after"] = value
        if fault.retry_after not in ("date", "pastdate"):
            headers["retry-after-ms"] = str(int(value) * 1000)
    return headers


def render_openai_fault(fault: Fault, *, now: float) -> Rendered:
    """Render an injected fault in OpenAI style (``quota`` is OpenAI's 429 ``insufficient_quota``)."""
    if fault.kind == "malformed":
        return Rendered(HTMLResponse("<html>oops", 200), None, None)
    if fault.kind == "code500":
        # Some OpenAI-compatible relays answer errors with HTTP 200: the body has no data, only "error".
        body = {"error": {"message": "internal", "type": "server_error", "param": None, "code": None}}
        return Rendered(JSONResponse(body, 200), None, None)
    if fault.kind == "moderation":
        return render_openai_error(OPENAI_MODERATION)
    if fault.kind == "quota":
        return render_openai_error(OPENAI_QUOTA)  # billing: no retry-after, retrying does not help
    status = fault.http_status or 500
    error = _OPENAI_BY_STATUS.get(status) or OpenAIError(status, "Upstream error, please retry.", "server_error")
    return render_openai_error(error, openai_rate_limit_headers(fault, now) if status == 429 else None)
