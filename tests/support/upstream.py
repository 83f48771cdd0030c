"""A scripted upstream for the store tier: a runtime on a real database whose APIDot client answers from
a function (httpx MockTransport) instead of the network, so submit and poll run their real code."""

from __future__ import annotations

from typing import Any

import httpx

from config.settings import Settings
from imagegen.providers.apidot import APIDotProvider
from imagegen.runtime import Runtime
from tests.support.recorder import Answer, Recorder


def scripted_runtime(database_url: str, **settings: Any) -> Runtime:
    """A runtime on ``database_url`` with no broker (nothing here publishes); ``settings`` override."""
    return Runtime.create(
        Settings(database_url=database_url, redis_url="redis://unused:1/0", **settings), check_schema=False
    )


def serve(rt: Runtime, answer: Answer) -> Recorder:
    """Make ``answer`` the upstream of ``rt``'s APIDot provider; the recorder keeps what it was sent."""
    upstream = Recorder(answer)
    client = httpx.Client(transport=httpx.MockTransport(upstream))
    rt.providers = {"apidot": APIDotProvider(client, base_url="https://api.example", api_key="k")}
    return upstream


def raising(exc: Exception) -> Answer:
    """An answer that fails the way the transport would: by raising ``exc``."""

    def answer(request: httpx.Request) -> httpx.Response:
        raise exc

    return answer
