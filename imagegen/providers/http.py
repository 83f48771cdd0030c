"""The HTTP boundary of every provider client: statuses, error bodies and httpx failures mapped to errors.

Like httpx's ``map_httpcore_exceptions``, nothing past this module sees an httpx exception, a status
code to interpret, or a raw error body: provider clients call these and raise only the
``ProviderError`` subclasses of ``imagegen.errors``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from imagegen.constants import clip
from imagegen.errors import RETRYABLE_KINDS, ErrorKind, ProviderError, provider_error
from imagegen.timing.backoff import parse_retry_after

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
    return clip(text, _MAX_MESSAGE)


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
