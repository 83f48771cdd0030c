"""Request body caps for every route, as pure ASGI middleware: 413 before a byte too many is read.

A declared ``Content-Length`` over the cap is answered at once, without reading the body; a chunked
body is counted as the route reads it, and the read that crosses the cap raises ``BodyTooLarge`` (an
``HTTPException`` 413). ``/webhooks/*`` faces the internet and carries small JSON: its cap is 64 KiB.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Upstream callbacks are a few hundred bytes of JSON.
WEBHOOK_MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(HTTPException):
    """The request body is over its route's cap (rendered 413 ``{"detail": ...}``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes", headers={"Connection": "close"})
        self.limit = limit


class BodyLimit:
    """Cap request bodies at ``max_bytes``, or at the first matching ``(path prefix, cap)`` override."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, overrides: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = tuple(overrides)

    def limit_for(self, path: str) -> int:
        """The cap for a request path."""
        return next((cap for prefix, cap in self.overrides if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _reject(send, BodyTooLarge(limit))
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:  # read outside a route (where FastAPI would have answered 413)
            if started:
                raise
            await _reject(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length itself
    return None


async def _reject(send: Send, exc: BodyTooLarge) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
