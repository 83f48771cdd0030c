"""The one exception tree and the classification of upstream failures.

::

    ImagegenError
    ├── RequestInvalid            local validation failed (field errors); nothing was queued
    ├── JobNotFound
    ├── UnknownProvider
    ├── InvalidTransition         a lifecycle edge that the state machine does not allow
    ├── UnsafeURL                 a URL the worker must not fetch
    └── ProviderError             an upstream call failed; ``kind`` says what happens next
        ├── RetryableError        rate_limited, upstream_unavailable
        └── FinalError            invalid_request, content_rejected, generation_failed
            └── AccountError      auth_failed, insufficient_credits (hold the job, pause the key)

Provider clients raise only ``ProviderError`` subclasses: httpx exceptions, HTTP statuses and error
bodies are mapped at that boundary (``classify_http``, ``map_transport_errors``), like httpx maps httpcore.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx


class ErrorKind(StrEnum):
    """Stable error strings shown to users and used in metrics (SPEC §3)."""

    INVALID_REQUEST = "invalid_request"
    CONTENT_REJECTED = "content_rejected"
    AUTH_FAILED = "auth_failed"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    SUBMIT_OUTCOME_UNKNOWN = "submit_outcome_unknown"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    GENERATION_FAILED = "generation_failed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELED = "canceled"
    #: The upstream finished, but its result file cannot be fetched for good (404/403/410, not an image).
    RESULT_UNAVAILABLE = "result_unavailable"


#: Errors worth another call (with backoff); everything else ends or holds the job.
RETRYABLE_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.UPSTREAM_UNAVAILABLE})
#: Errors that mean every job on this key would fail: hold the job and pause the key.
ACCOUNT_KINDS = frozenset({ErrorKind.AUTH_FAILED, ErrorKind.INSUFFICIENT_CREDITS})


class ImagegenError(Exception):
    """Root of every error this project raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One invalid request field: ``field`` is a dotted path such as ``image_urls.0``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class RequestInvalid(ImagegenError):
    """A request failed local validation; nothing was queued or sent upstream."""

    kind = ErrorKind.INVALID_REQUEST

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors) or "invalid request")


class JobNotFound(ImagegenError):
    """No job has this id."""


class UnknownProvider(ImagegenError):
    """No provider has this name."""


class InvalidTransition(ImagegenError):
    """The lifecycle does not allow this edge (a programming error, not a race)."""


class UnsafeURL(ImagegenError):
    """A URL the worker refuses to fetch (not https, private address, too large, wrong type)."""


class ProviderError(ImagegenError):
    """An upstream call failed. ``kind`` decides the action; the rest is for people and the attempt log."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether another call may succeed."""
        return self.kind in RETRYABLE_KINDS

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind.value!r}, {self.message!r}, http_status={self.http_status})"


class RetryableError(ProviderError):
    """rate_limited or upstream_unavailable: call again later."""


class FinalError(ProviderError):
    """The job cannot succeed by repeating this call."""


class AccountError(FinalError):
    """The provider key itself is unusable (401/402/403): hold the job and pause the key."""


def provider_error(
    kind: ErrorKind, message: str, *, http_status: int | None = None, retry_after: float | None = None
) -> ProviderError:
    """Build the right ``ProviderError`` subclass for ``kind``."""
    cls: type[ProviderError]
    if kind in RETRYABLE_KINDS:
        cls = RetryableError
    elif kind in ACCOUNT_KINDS:
        cls = AccountError
    else:
        cls = FinalError
    return cls(kind, message, http_status=http_status, retry_after=retry_after)


# --- classification ---------------------------------------------------------------------------------

_SAFETY = re.compile(r"moderation|safety|content[_ ]policy|content_filter|nsfw", re.IGNORECASE)
_MAX_MESSAGE = 500


def is_safety_message(text: str | None) -> bool:
    """Whether an upstream message says the content was blocked for safety reasons."""
    return bool(text) and bool(_SAFETY.search(text or ""))


def error_message_from_body(body: Any) -> tuple[str, str]:
    """Extract ``(message, tags)`` from any of the documented error bodies; never raises.

    ``tags`` joins the error's ``type`` and ``code`` (OpenAI puts ``moderation_blocked`` and
    ``insufficient_quota`` in ``code`` next to a generic ``type``), so classification sees both.
    """
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            tags = " ".join(_clip(err.get(k)) for k in ("type", "code") if err.get(k) is not None)
            return _clip(err.get("message")), tags
        if isinstance(err, str):
            return _clip(err), ""
        detail = body.get("detail")
        if detail is not None:
            return _clip(detail), ""
        if "message" in body:
            return _clip(body.get("message")), ""
    if isinstance(body, str):
        return _clip(body), ""
    return "", ""


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return clean_text(text, _MAX_MESSAGE)


def clean_text(text: str, limit: int) -> str:
    """Upstream text fit to store: NUL characters removed (PostgreSQL text cannot hold them), clipped."""
    return text.replace("\x00", "")[:limit]


def usable_id(value: Any, limit: int = 200) -> bool:
    """Whether an upstream id is a sane string to store and put in URLs (no control characters)."""
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def classify_http(status: int, body: Any = None) -> ErrorKind:
    """Map an upstream HTTP status (or the ``code`` of a 2xx body) and its error body to an error kind."""
    message, err_type = error_message_from_body(body)
    if status in (400, 422):
        if is_safety_message(message) or is_safety_message(err_type):
            return ErrorKind.CONTENT_REJECTED
        return ErrorKind.INVALID_REQUEST
    if status in (401, 403):
        return ErrorKind.AUTH_FAILED
    if status == 402:
        return ErrorKind.INSUFFICIENT_CREDITS
    if status == 429:
        if "insufficient_quota" in err_type.split() or "insufficient_quota" in message:
            return ErrorKind.INSUFFICIENT_CREDITS
        return ErrorKind.RATE_LIMITED
    if status == 408 or status >= 500:
        return ErrorKind.UPSTREAM_UNAVAILABLE
    if 200 <= status < 300:
        # A 2xx whose body we could not use: the upstream misbehaved, which is transient by nature.
        return ErrorKind.UPSTREAM_UNAVAILABLE
    # Other 4xx (404 on submit, 405, 409, 413...): our request is wrong for this upstream.
    return ErrorKind.INVALID_REQUEST


def error_from_response(response: httpx.Response, body: Any, *, status: int | None = None) -> ProviderError:
    """Build the ``ProviderError`` for a failed upstream response (``status`` overrides for in-body codes)."""
    from imagegen.backoff import parse_retry_after  # local: backoff imports nothing from here at import time

    code = status if status is not None else response.status_code
    kind = classify_http(code, body)
    message, _ = error_message_from_body(body)
    retry_after = parse_retry_after(response.headers) if kind in RETRYABLE_KINDS else None
    return provider_error(kind, message or f"HTTP {code}", http_status=response.status_code, retry_after=retry_after)


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Turn every httpx transport failure into ``upstream_unavailable`` (httpx's own boundary pattern)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise provider_error(ErrorKind.UPSTREAM_UNAVAILABLE, f"timeout: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise provider_error(ErrorKind.UPSTREAM_UNAVAILABLE, f"transport error: {type(exc).__name__}") from exc
    except httpx.RequestError as exc:  # DecodingError, TooManyRedirects, and whatever httpx adds later
        raise provider_error(ErrorKind.UPSTREAM_UNAVAILABLE, f"request error: {type(exc).__name__}") from exc
