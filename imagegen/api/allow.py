"""The ``Allow`` header of a 405: every method the path serves, not just those of its first route.

Starlette answers a wrong method with the methods of the first route whose path matched; a path
served by two routes (``GET`` and ``POST /v1/jobs``) must list both (RFC 9110, section 15.5.6).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import APIRouter, Request
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match, Route

Handler = Callable[[Request, Exception], Awaitable[Response]]


def allow_every_method(routers: Sequence[APIRouter]) -> Handler:
    """An HTTP-exception handler: FastAPI's, with a 405's ``Allow`` listing every route of ``routers`` on the path.

    The routers must be included without an extra prefix (their routes' paths are the served paths).
    """

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            methods: set[str] = set()
            for router in routers:
                for route in router.routes:
                    if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
                        methods |= route.methods
            if methods:
                headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
                exc = HTTPException(405, exc.detail, headers=headers)
        return await http_exception_handler(request, exc)

    return handle
