"""image2 client: an OpenAI-shaped API run asynchronously with ``"async": true``.

``POST {base}/images/generations`` answers ``{"task_id", "status": "pending"}``; ``GET
{base}/images/tasks/{task_id}`` answers ``{"status", "progress", "data": [{"url", "revised_prompt"}],
"error"}``. Errors are OpenAI-shaped (``{"error": {"message", "type", "code"}}``), classified by ``send``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from imagegen.constants import clip
from imagegen.errors import ErrorKind, provider_error
from imagegen.providers.base import (
    AsyncTaskClient,
    Phase,
    SubmitResult,
    UpstreamState,
    body_progress,
    body_text,
    body_urls,
    require_key,
    send,
    submit_headers,
)
from imagegen.providers.http import error_message_from_body, usable_id
from imagegen.request import ImageRequest

#: Documented statuses; anything else (``pending``, ``processing``, ``queued``...) is still in progress.
_PHASES = {"completed": Phase.SUCCEEDED, "failed": Phase.FAILED}
_MAX_TEXT = 500
_MAX_TASK_ID = 200


class Image2Provider(AsyncTaskClient):
    """Talks to image2 (or anything speaking its contract, such as the simulator)."""

    name = "image2"
    key_variable = "IMAGE2_API_KEY"

    def submit(
        self, request: ImageRequest, *, callback_url: str | None = None, idempotency_key: str | None = None
    ) -> SubmitResult:
        """POST the request as an async task; one call is one paid generation.

        ``callback_url`` is ignored: image2 documents no webhook, so its jobs are polled.
        """
        require_key(self._key_set, self.key_variable)
        extra: dict[str, Any] = {"timeout": self._submit_timeout} if self._submit_timeout is not None else {}
        response, data = send(
            self._client,
            "POST",
            f"{self._base}/images/generations",
            headers=submit_headers(self._headers, idempotency_key),
            json=build_body(request),
            **extra,
        )
        task_id = data.get("task_id")
        if not usable_id(task_id, _MAX_TASK_ID):
            raise provider_error(
                ErrorKind.UPSTREAM_UNAVAILABLE,
                "submit answer has no task_id",
                http_status=response.status_code,
                maybe_sent=True,  # a 2xx: the task may well exist upstream
            )
        return SubmitResult(task_id=task_id, status=body_text(data.get("status")), http_status=response.status_code)

    def status(self, task_id: str) -> UpstreamState:
        """GET the task; ``completed`` carries the result URLs, ``failed`` the upstream message."""
        require_key(self._key_set, self.key_variable)
        url = f"{self._base}/images/tasks/{quote(task_id, safe='')}"
        response, data = send(self._client, "GET", url, headers=self._headers, status_call=True)
        return parse_task(data, http_status=response.status_code)


def build_body(request: ImageRequest) -> dict[str, Any]:
    """The submit body: only fields that are set; reference images pass through as URLs."""
    body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": 1}
    if request.size is not None:
        body["size"] = request.size
    if request.image_urls:
        body["image"] = list(request.image_urls)
    body["async"] = True
    return body


def parse_task(data: Any, *, http_status: int = 200) -> UpstreamState:
    """Read a task body; anything unusable is ``upstream_unavailable`` (the next poll may do better)."""
    raw_status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(raw_status, str) or not raw_status:
        raise provider_error(ErrorKind.UPSTREAM_UNAVAILABLE, "task answer has no status", http_status=http_status)
    raw = clip(raw_status, 64)
    phase = _PHASES.get(raw.lower(), Phase.PENDING)
    urls = tuple(body_urls(data.get("data"), "url"))
    if phase is Phase.SUCCEEDED and not urls:
        raise provider_error(ErrorKind.UPSTREAM_UNAVAILABLE, "completed task has no image URL", http_status=http_status)
    return UpstreamState(
        raw_status=raw,
        phase=phase,
        http_status=http_status,
        progress=body_progress(data.get("progress")),
        file_urls=urls,
        error_message=_error_message(data.get("error")) if phase is Phase.FAILED else None,
    )


def _error_message(error: Any) -> str | None:
    """``error`` as a string or ``{"message", "type", "code"}``; the tags are kept so the core can tell a
    safety failure (``moderation_blocked``) whose message does not say so."""
    if error is None:
        return None
    message, tags = error_message_from_body({"error": error})
    if tags and tags not in message:
        message = f"{message} ({tags})" if message else tags
    return message[:_MAX_TEXT] or None
