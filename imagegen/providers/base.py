"""The provider interface: ``submit(request) -> SubmitResult`` and ``status(task_id) -> UpstreamState``.

Clients take an injected ``httpx.Client`` (one per worker process) and raise only ``ProviderError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import httpx

from imagegen.errors import ErrorKind, error_from_response, map_transport_errors, provider_error
from imagegen.requests import ImageRequest


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

    def submit(self, request: ImageRequest, *, callback_url: str | None = None) -> SubmitResult:
        """Create an upstream task (one paid generation). Raises ``ProviderError``."""
        ...

    def status(self, task_id: str) -> UpstreamState:
        """Read an upstream task's state (free, repeatable). Raises ``ProviderError``."""
        ...


def send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
    """Make one call and return ``(response, parsed JSON or None)``; HTTP errors raise ``ProviderError``."""
    with map_transport_errors():
        response = client.request(method, url, **kwargs)
    try:
        body: Any = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        body = None
    if not response.is_success:
        raise error_from_response(response, body if body is not None else response.text[:500])
    if not isinstance(body, dict):
        raise provider_error(
            ErrorKind.UPSTREAM_UNAVAILABLE,
            f"malformed {response.status_code} response (not a JSON object)",
            http_status=response.status_code,
        )
    return response, body
