"""APIDot client (SPEC §4): ``/api/generate/submit`` and ``/api/generate/status/{task_id}``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from imagegen.errors import ErrorKind, clean_text, error_from_response, provider_error, usable_id
from imagegen.providers.base import Phase, SubmitResult, UpstreamState, body_progress, body_text, body_urls, send
from imagegen.requests import ImageRequest

#: ``code`` values that mean success on every APIDot response (both are documented).
OK_CODES = (0, 200)
#: Documented statuses; anything else is treated as still in progress.
_PHASES = {"finished": Phase.SUCCEEDED, "failed": Phase.FAILED}


class APIDotProvider:
    """Talks to APIDot (or anything speaking its contract, such as the simulator)."""

    name = "apidot"
    synchronous = False

    def __init__(self, client: httpx.Client, *, base_url: str, api_key: str) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def submit(self, request: ImageRequest, *, callback_url: str | None = None) -> SubmitResult:
        """POST the request; one call is one paid generation."""
        body: dict[str, Any] = {"model": request.model, "input": build_input(request)}
        if callback_url:
            body["callback_url"] = callback_url
        response, data = self._call("POST", "/api/generate/submit", json=body)
        payload = data.get("data")
        task_id = payload.get("task_id") if isinstance(payload, dict) else None
        if not usable_id(task_id):
            raise provider_error(
                ErrorKind.UPSTREAM_UNAVAILABLE,
                "submit answer has no task_id",
                http_status=response.status_code,
            )
        status = payload.get("status") if isinstance(payload, dict) else None
        return SubmitResult(task_id=task_id, status=body_text(status), http_status=response.status_code)

    def status(self, task_id: str) -> UpstreamState:
        """GET the task's status; both documented shapes (``data.files`` and ``data.output.files``)."""
        response, data = self._call("GET", f"/api/generate/status/{quote(task_id, safe='')}")
        return parse_status(data, http_status=response.status_code)

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, dict[str, Any]]:
        response, data = send(self._client, method, self._base + path, headers=self._headers, **kwargs)
        code = data.get("code")
        if code is not None and code not in OK_CODES:
            # An error inside a 2xx: classify by the body's own code.
            status = code if isinstance(code, int) and not isinstance(code, bool) and 100 <= code < 600 else 500
            raise error_from_response(response, data, status=status)
        return response, data


def build_input(request: ImageRequest) -> dict[str, Any]:
    """The ``input`` object of a submit; ``n`` is never sent (APIDot rejects it)."""
    fields: dict[str, Any] = {"prompt": request.prompt}
    for name in ("quality", "size", "resolution"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    if request.image_urls:
        fields["image_urls"] = list(request.image_urls)
    return fields


def parse_status(data: Any, *, http_status: int = 200) -> UpstreamState:
    """Read a status body; anything unusable is ``upstream_unavailable`` (the next poll may do better)."""
    payload = data.get("data") if isinstance(data, dict) else None
    if not isinstance(payload, dict) or not isinstance(payload.get("status"), str):
        raise provider_error(
            ErrorKind.UPSTREAM_UNAVAILABLE, "status answer has no data.status", http_status=http_status
        )
    raw = clean_text(payload["status"], 64)
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
