"""Helpers shared by every simulated provider: bearer auth and recorded responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from .errors import Rendered
from .state import Endpoint, SimState

#: The one API key every simulated provider rejects.
INVALID_KEY = "invalid"


def bearer_ok(request: Request) -> bool:
    """True for ``Authorization: Bearer <any non-empty key except "invalid">``."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    return scheme.lower() == "bearer" and bool(key) and key != INVALID_KEY


@dataclass
class Call:
    """One incoming provider request; every way out of a handler goes through :meth:`send`."""

    state: SimState
    request: Request
    endpoint: Endpoint
    provider: str = "apidot"
    task_id: str | None = None
    prompt: str | None = None
    directives: tuple[str, ...] = ()
    #: The submit's reference image URLs (APIDot), kept in the record so tests see what was sent.
    image_urls: tuple[str, ...] | None = None

    def send(self, rendered: Rendered) -> Response:
        """Record the answer and return it."""
        self.state.record(
            method=self.request.method,
            path=self.request.url.path,
            endpoint=self.endpoint,
            provider=self.provider,
            status_code=rendered.response.status_code,
            task_id=self.task_id,
            prompt=self.prompt,
            directives=self.directives,
            code=rendered.code,
            retry_after=rendered.retry_after,
            idempotency_key=self.request.headers.get("idempotency-key"),
            image_urls=self.image_urls,
            **self.extra_facts(rendered),
        )
        return rendered.response

    def extra_facts(self, rendered: Rendered) -> dict[str, Any]:
        """Provider-specific fields for the request record (none here)."""
        return {}

    def send_json(self, body: dict[str, object], status: int = 200) -> Response:
        """Record and return a JSON success body (its ``code`` field goes to the record)."""
        code = body.get("code")
        return self.send(Rendered(JSONResponse(body, status), code if isinstance(code, int) else None, None))
