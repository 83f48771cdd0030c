"""The one exception tree, and the error kinds every failure is classified into.

::

    ImagegenError
    ├── RequestInvalid            local validation failed (field errors); nothing was queued
    ├── IdempotencyConflict       an idempotency key already names a different request (HTTP 409)
    ├── JobIdConflict             a job id sent by name already names another tenant's or request's job
    ├── JobNotFound
    ├── UnknownProvider
    ├── InvalidTransition         a lifecycle edge that the state machine does not allow
    ├── SchemaBehind              the database schema is older than the code (``imagegen db upgrade``)
    ├── DatabaseUnusable          ``DATABASE_URL`` cannot be used (start-up refuses it)
    ├── WebhookRejected           an upstream callback refused with its HTTP status (400/401/404)
    ├── UnsafeURL                 a URL the worker must not fetch
    │   └── ContentRefused        the server answered, but not with a body the policy accepts
    ├── FetchFailed               a safe URL could not be fetched (status, DNS, transport, too slow)
    ├── NotAnImage                bytes that are not an image in a format we store
    ├── DownloadFailed            a job's result download failed (carries a ``DownloadFailure``)
    └── ProviderError             an upstream call failed; ``kind`` says what happens next
        ├── RetryableError        rate_limited, upstream_unavailable
        │   └── MaybeSentError    upstream_unavailable after the request may have been processed
        │                         (no answer, a gateway 502/504, a 2xx we cannot use): for a submit,
        │                         the outcome is unknown and another POST may be a second payment
        └── FinalError            invalid_request, content_rejected, generation_failed
            └── AccountError      auth_failed, insufficient_credits (hold the job, pause the key)

Provider clients raise only ``ProviderError`` subclasses: httpx exceptions, HTTP statuses and error
bodies are mapped at that boundary (``imagegen.providers.http``), like httpx maps httpcore.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """Stable error strings shown to users and used in metrics (README, 'How a job flows')."""

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


class FetchFailed(ImagegenError):
    """A safe URL could not be fetched: HTTP error status, DNS or transport failure, too slow.

    Not a safety problem: callers treat it as transient. ``status_code`` is the final HTTP status, or
    ``None`` when no response arrived.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ContentRefused(UnsafeURL):
    """The server answered, but not with a body the policy accepts (wrong content type, or an untyped
    body whose bytes are not of an accepted type). A subclass of ``UnsafeURL``, so callers that only
    know refusals keep refusing it; callers that care (result downloads) can tell it from an unsafe URL.
    """


class NotAnImage(ImagegenError):
    """Bytes that are not an image in a format we store (whatever type they were declared with)."""


@dataclass(frozen=True)
class DownloadFailure:
    """What one failed download means for the job."""

    message: str
    http_status: int | None = None
    #: The file seems gone or is not an image (404/403/410, other 4xx, wrong type): a few tries are
    #: allowed (storage behind a CDN can lag a finished task), then ``result_unavailable``.
    definite: bool = False
    #: A URL or body we refuse to fetch (unsafe address, too large): no retry can help.
    refused: bool = False

    @property
    def kind(self) -> ErrorKind:
        """The error kind this failure is recorded with (for the job when it ends it)."""
        if self.definite:
            return ErrorKind.RESULT_UNAVAILABLE
        return ErrorKind.UPSTREAM_UNAVAILABLE


class DownloadFailed(ImagegenError):
    """A download attempt of a job's result files failed; ``entries`` keeps every file stored before it."""

    def __init__(self, failure: DownloadFailure, entries: list[dict[str, Any]]) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.entries = entries


class SchemaBehind(ImagegenError):
    """The database schema is older than this code (run ``imagegen db upgrade``)."""


class DatabaseUnusable(ImagegenError):
    """The database at ``DATABASE_URL`` cannot be used (missing directory, unreachable, wrong schema)."""


class IdempotencyConflict(ImagegenError):
    """An idempotency key already names a job created for a different request (HTTP 409, CLI exit 2)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"idempotency_key: {key!r} was already used for a different request")


class JobIdConflict(ImagegenError):
    """A message by task name gave a ``job_id`` that already names a job of another tenant, or one made
    for a different request: that job is left as it is, and never handed back as the sender's."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job_id: {job_id!r} already names a job of another tenant or request")


class WebhookRejected(ImagegenError):
    """The webhook is refused with ``status_code`` (400 malformed, 401 token/signature, 404 unknown)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


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
