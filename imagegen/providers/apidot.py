"""APIDot client: ``/api/generate/submit`` and ``/api/generate/status/{task_id}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

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
from imagegen.providers.http import error_from_response, usable_id
from imagegen.request import ImageRequest

#: ``code`` values that mean success on every APIDot response (both are documented).
OK_CODES = (0, 200)
#: Terminal statuses: the documented ``finished``/``failed`` and the other words APIDot-family APIs use
#: (``success`` needs files like ``finished``; ``canceled`` ends the task without a result). Anything
#: else is treated as still in progress.
_PHASES = {
    "finished": Phase.SUCCEEDED,
    "success": Phase.SUCCEEDED,
    "succeeded": Phase.SUCCEEDED,
    "completed": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "error": Phase.FAILED,
    "canceled": Phase.FAILED,
    "cancelled": Phase.FAILED,
}


class APIDotProvider(AsyncTaskClient):
    """Talks to APIDot (or anything speaking its contract, such as the simulator)."""

    name = "apidot"
    key_variable = "APIDOT_API_KEY"

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        api_key: str,
        submit_timeout: httpx.Timeout | None = None,
        upload_url: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__(client, base_url=base_url, api_key=api_key, submit_timeout=submit_timeout)
        #: Our signed URL of an upload (``image_files``), None when we serve none (no public URL).
        self._upload_url = upload_url

    def submit(
        self, request: ImageRequest, *, callback_url: str | None = None, idempotency_key: str | None = None
    ) -> SubmitResult:
        """POST the request; one call is one paid generation."""
        require_key(self._key_set, self.key_variable)
        uploads = [self._reference_url(i, key) for i, key in enumerate(request.image_files or ())]
        body: dict[str, Any] = {"model": request.model, "input": build_input(request, uploads)}
        if callback_url:
            body["callback_url"] = callback_url
        extra: dict[str, Any] = {"timeout": self._submit_timeout} if self._submit_timeout is not None else {}
        response, data = self._call(
            "POST", "/api/generate/submit", headers=submit_headers(self._headers, idempotency_key), json=body, **extra
        )
        payload = data.get("data")
        task_id = payload.get("task_id") if isinstance(payload, dict) else None
        if not usable_id(task_id):
            raise provider_error(
                ErrorKind.UPSTREAM_UNAVAILABLE,
                "submit answer has no task_id",
                http_status=response.status_code,
                maybe_sent=True,  # a 2xx: the task may well exist upstream
            )
        status = payload.get("status") if isinstance(payload, dict) else None
        return SubmitResult(task_id=task_id, status=body_text(status), http_status=response.status_code)

    def _reference_url(self, index: int, key: str) -> str:
        url = self._upload_url(key) if self._upload_url is not None else None
        if url is None:
            # APIDot fetches references itself: without a public URL of ours nothing can serve it this file.
            raise provider_error(
                ErrorKind.INVALID_REQUEST,
                f"image_files.{index}: apidot fetches reference images by URL from this API; set"
                " IMAGEGEN_PUBLIC_URL and IMAGEGEN_CALLBACK_TOKEN_SECRET (the same in every process)",
            )
        return url

    def status(self, task_id: str) -> UpstreamState:
        """GET the task's status; both documented shapes (``data.files`` and ``data.output.files``)."""
        require_key(self._key_set, self.key_variable)
        response, data = self._call(
            "GET", f"/api/generate/status/{quote(task_id, safe='')}", headers=self._headers, status_call=True
        )
        return parse_status(data, http_status=response.status_code)

    def _call(
        self, method: str, path: str, *, status_call: bool = False, **kwargs: Any
    ) -> tuple[httpx.Response, dict[str, Any]]:
        response, data = send(self._client, method, self._base + path, status_call=status_call, **kwargs)
        code = data.get("code")
        if code is not None and code not in OK_CODES:
            # An error inside a 2xx: classify by the body's own code.
            status = code if isinstance(code, int) and not isinstance(code, bool) and 100 <= code < 600 else 500
            raise error_from_response(response, data, status=status, status_call=status_call)
        return response, data


def build_input(request: ImageRequest, upload_urls: Sequence[str] = ()) -> dict[str, Any]:
    """The ``input`` object of a submit; ``n`` is never sent (APIDot rejects it). ``upload_urls``: where
    APIDot fetches the request's ``image_files`` from us."""
    fields: dict[str, Any] = {"prompt": request.prompt}
    for name in ("quality", "size", "resolution"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    urls = [*(request.image_urls or ()), *upload_urls]
    if urls:
        fields["image_urls"] = urls
    return fields


def parse_status(data: Any, *, http_status: int = 200) -> UpstreamState:
    """Read a status body; anything unusable is ``upstream_unavailable`` (the next poll may do better)."""
    payload = data.get("data") if isinstance(data, dict) else None
    if not isinstance(payload, dict) or not isinstance(payload.get("status"), str):
        raise provider_error(
            ErrorKind.UPSTREAM_UNAVAILABLE, "status answer has no data.status", http_status=http_status
        )
    raw = clip(payload["status"], 64)
    phase = _PHASES.get(raw.lower(), Phase.PENDING)
    files = payload.get("files")
    output = payload.get("output")
    if not files and isinstance(output, dict):
        files = output.get("files")
    urls = tuple(body_urls(files, "file_url"))
    if phase is Phase.SUCCEEDED and not urls:
        raise provider_error(ErrorKind.UPSTREAM_UNAVAILABLE, "finished task has no files", http_status=http_status)
    return UpstreamState(
        raw_status=raw,
        phase=phase,
        http_status=http_status,
        progress=body_progress(payload.get("progress")),
        file_urls=urls,
        error_message=body_text(payload.get("error_message")),
    )
