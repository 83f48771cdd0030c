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
        │   └── MaybeSentError    upstream_unavailable after the request may have been processed
        │                         (no answer, a gateway 502/504, a 2xx we cannot use): for a submit,
        │                         the outcome is unknown and another POST may be a second payment
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

    #: Whether the request may have reached the upstream and been acted on although we have no usable
    #: answer. Only a submit cares: repeating it may pay twice.
    maybe_sent = False

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


class MaybeSentError(RetryableError):
    """upstream_unavailable, but the upstream may have processed the request (read timeout, connection
    lost after sending, 502/504, a 2xx without a usable answer)."""

    maybe_sent = True


class FinalError(ProviderError):
    """The job cannot succeed by repeating this call."""


class AccountError(FinalError):
    """The provider key itself is unusable (401/402/403): hold the job and pause the key."""


def provider_error(
    kind: ErrorKind,
    message: str,
    *,
    http_status: int | None = None,
    retry_after: float | None = None,
    maybe_sent: bool = False,
) -> ProviderError:
    """Build the right ``ProviderError`` subclass for ``kind`` (``maybe_sent``: see ``MaybeSentError``)."""
    cls: type[ProviderError]
    if maybe_sent and kind == ErrorKind.UPSTREAM_UNAVAILABLE:
        cls = MaybeSentError
    elif kind in RETRYABLE_KINDS:
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


#: Billing stops that some APIs send as a 400 or a 429 (OpenAI: ``billing_hard_limit_reached``).
_BILLING_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
#: Gateways answer these when they gave up waiting: the upstream behind them may have done the work.
_GATEWAY_STATUSES = frozenset({502, 504})


def classify_http(
    status: int, body: Any = None, *, status_call: bool = False, should_retry: bool | None = None
) -> ErrorKind:
    """Map an upstream HTTP status (or the ``code`` of a 2xx body) and its error body to an error kind.

    ``status_call``: the call read a task we created, so a 404 is the upstream not (yet) finding it, not
    a wrong request. ``should_retry``: the ``x-should-retry`` header; ``True`` makes an answer that would
    end the job for a bad request retryable (the OpenAI SDK retries on it too). ``False`` is not taken to
    end a job on a 5xx: the SDK uses it to stop its own immediate retries, and ours are spaced by backoff
    and bounded by a budget.
    """
    message, tags = error_message_from_body(body)
    kind = _classify(status, message, tags, status_call=status_call)
    if should_retry and kind is ErrorKind.INVALID_REQUEST:
        return ErrorKind.UPSTREAM_UNAVAILABLE
    return kind


def _classify(status: int, message: str, tags: str, *, status_call: bool) -> ErrorKind:
    billing = bool(_BILLING_CODES & set(tags.split())) or any(code in message for code in _BILLING_CODES)
    if status in (400, 422):
        if billing:
            return ErrorKind.INSUFFICIENT_CREDITS
        if is_safety_message(message) or is_safety_message(tags):
            return ErrorKind.CONTENT_REJECTED
        return ErrorKind.INVALID_REQUEST
    if status in (401, 403):
        return ErrorKind.AUTH_FAILED
    if status == 402:
        return ErrorKind.INSUFFICIENT_CREDITS
    if status == 429:
        return ErrorKind.INSUFFICIENT_CREDITS if billing else ErrorKind.RATE_LIMITED
    if status == 404 and status_call:
        # A task we created answered "not found": a lagging replica or a hiccup; the poll budget bounds it.
        return ErrorKind.UPSTREAM_UNAVAILABLE
    if status in (408, 409) or status >= 500:
        # 409: a conflicting request (the same idempotency key still in progress, a lock): try again later.
        return ErrorKind.UPSTREAM_UNAVAILABLE
    if 200 <= status < 300:
        # A 2xx whose body we could not use: the upstream misbehaved, which is transient by nature.
        return ErrorKind.UPSTREAM_UNAVAILABLE
    # Other 4xx (404 on submit, 405, 413...): our request is wrong for this upstream.
    return ErrorKind.INVALID_REQUEST


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The ``x-should-retry`` header (not a standard, but OpenAI and others send it): True, False or None."""
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    return True if value == "true" else False if value == "false" else None


def error_from_response(
    response: httpx.Response, body: Any, *, status: int | None = None, status_call: bool = False
) -> ProviderError:
    """Build the ``ProviderError`` for a failed upstream response (``status`` overrides for in-body codes)."""
    from imagegen.timing.backoff import parse_retry_after  # local: backoff imports nothing from here at import time

    code = status if status is not None else response.status_code
    kind = classify_http(code, body, status_call=status_call, should_retry=should_retry_header(response.headers))
    message, _ = error_message_from_body(body)
    retry_after = parse_retry_after(response.headers) if kind in RETRYABLE_KINDS else None
    return provider_error(
        kind,
        message or f"HTTP {code}",
        http_status=response.status_code,
        retry_after=retry_after,
        maybe_sent=code in _GATEWAY_STATUSES,
    )


#: Transport errors raised before any byte of the request left (connecting, DNS, pool, proxy, or a
#: request httpx refused to write): nothing reached the upstream. Every other one may have.
_NOTHING_SENT: tuple[type[httpx.RequestError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Turn every httpx failure into ``upstream_unavailable`` (httpx's own boundary pattern); one after the
    request may have been sent is a ``MaybeSentError``."""
    try:
        yield
    except httpx.RequestError as exc:  # TimeoutException, TransportError, DecodingError, TooManyRedirects...
        if isinstance(exc, httpx.TimeoutException):
            prefix = "timeout"
        elif isinstance(exc, httpx.TransportError):
            prefix = "transport error"
        else:
            prefix = "request error"
        raise provider_error(
            ErrorKind.UPSTREAM_UNAVAILABLE,
            f"{prefix}: {type(exc).__name__}",
            maybe_sent=not isinstance(exc, _NOTHING_SENT),
        ) from exc
