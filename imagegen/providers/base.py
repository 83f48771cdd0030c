"""The provider interface: ``submit(request) -> SubmitResult`` and ``status(task_id) -> UpstreamState``.

Clients take an injected ``httpx.Client`` (one per worker process) and raise only ``ProviderError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import httpx

from imagegen.constants import clip
from imagegen.errors import ErrorKind, provider_error
from imagegen.providers.http import error_from_response, map_transport_errors
from imagegen.request import ImageRequest


class Phase(StrEnum):
    """What an upstream status means for us, whatever the provider calls it."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class GeneratedImage:
    """One image a synchronous provider returned in its answer (decoded ``b64_json``, or a URL)."""

    data: bytes | None = None
    url: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class SubmitResult:
    """Upstream accepted the request: an async provider gives ``task_id``; a synchronous one
    (``Provider.synchronous``) answers with the ``images`` themselves and no task id."""

    task_id: str | None
    status: str | None
    http_status: int
    images: tuple[GeneratedImage, ...] = ()
    usage: dict[str, Any] | None = None


@dataclass(frozen=True)
class UpstreamState:
    """One status reading of an upstream task."""

    raw_status: str
    phase: Phase
    http_status: int
    progress: int | None = None
    file_urls: tuple[str, ...] = field(default_factory=tuple)
    error_message: str | None = None


class Provider(Protocol):
    """What the core needs from an upstream image API."""

    name: str
    #: True when ``submit`` returns the images (OpenAI); False when it returns a task id to poll.
    synchronous: bool

    def submit(
        self, request: ImageRequest, *, callback_url: str | None = None, idempotency_key: str | None = None
    ) -> SubmitResult:
        """Create an upstream task (one paid generation). Raises ``ProviderError``.

        ``idempotency_key`` (the job id) is the same on every submit of one job, so an upstream that
        honours it can answer a repeated POST with the task it already created.
        """
        ...

    def status(self, task_id: str) -> UpstreamState:
        """Read an upstream task's state (free, repeatable). Raises ``ProviderError``."""
        ...


def send(
    client: httpx.Client, method: str, url: str, *, status_call: bool = False, **kwargs: Any
) -> tuple[httpx.Response, Any]:
    """Make one call and return ``(response, parsed JSON or None)``; HTTP errors raise ``ProviderError``.

    ``status_call``: the call reads a task we created (see ``classify_http``).
    """
    with map_transport_errors():
        response = client.request(method, url, **kwargs)
    try:
        body: Any = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        body = None
    if not response.is_success:
        raise error_from_response(response, body if body is not None else response.text[:500], status_call=status_call)
    if not isinstance(body, dict):
        # A 2xx we cannot read: whatever the upstream did (created a task?), we cannot know.
        raise provider_error(
            ErrorKind.UPSTREAM_UNAVAILABLE,
            f"malformed {response.status_code} response (not a JSON object)",
            http_status=response.status_code,
            maybe_sent=True,
        )
    return response, body


def require_key(key_set: bool, variable: str) -> None:
    """No key configured: ``auth_failed`` before any call (holds the job, pauses the key, names the variable).

    Without this an empty key makes an illegal ``Bearer `` header that httpx refuses to send, which
    would look like a transport error and be retried in vain.
    """
    if not key_set:
        raise provider_error(ErrorKind.AUTH_FAILED, f"{variable} is not set")


def submit_headers(headers: dict[str, str], idempotency_key: str | None) -> dict[str, str]:
    """The submit's headers: ``headers`` plus ``Idempotency-Key`` when one is given."""
    return {**headers, "Idempotency-Key": idempotency_key} if idempotency_key else headers


# --- reading untrusted answer bodies (shared by the provider clients) -------------------------------

_MAX_TEXT = 500
_MAX_URL = 4096


def body_text(value: Any, limit: int = _MAX_TEXT) -> str | None:
    """A string field of an answer, fit to store (NULs removed, clipped), or None if not a string."""
    return clip(value, limit) if isinstance(value, str) else None


def body_progress(value: Any) -> int | None:
    """A ``progress`` field clamped to 0..100 (numbers only: no bool, no NaN), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return int(max(0, min(100, value)))


def body_urls(items: Any, key: str) -> list[str]:
    """The http(s) URLs under ``key`` in a list of objects, skipping anything malformed."""
    if not isinstance(items, list):
        return []
    urls = []
    for item in items:
        url = item.get(key) if isinstance(item, dict) else None
        if (
            isinstance(url, str)
            and url.startswith(("https://", "http://"))
            and url.isprintable()
            and len(url) <= _MAX_URL
        ):
            urls.append(url)
    return urls


class AsyncTaskClient:
    """What the asynchronous providers' clients share: an injected ``httpx.Client`` (tests pass one with
    a ``MockTransport``), the base URL, and a bearer key that is checked before any call is made."""

    name: str
    key_variable: str
    synchronous = False

    def __init__(
        self, client: httpx.Client, *, base_url: str, api_key: str, submit_timeout: httpx.Timeout | None = None
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._key_set = bool(api_key.strip())
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        # The submit's own timeouts (None: the client's); a status call keeps the client's.
        self._submit_timeout = submit_timeout
