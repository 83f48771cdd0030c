"""Recorders: a ``Publisher`` that keeps the steps it is given, and an ``httpx.MockTransport`` handler that
keeps the requests it answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from imagegen.messages import Step

#: How a scripted upstream answers one request (it may also raise an httpx error).
Answer = Callable[[httpx.Request], httpx.Response]


class RecordingPublisher:
    """A ``Publisher`` that keeps the steps instead of sending them."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def publish(self, step: Step) -> None:
        self.steps.append(step)

    def publish_many(self, steps: Sequence[Step]) -> None:
        self.steps.extend(steps)


class Recorder:
    """A MockTransport handler that records every request (body read) and answers it.

    ``Recorder(answer)`` calls ``answer(request)`` (which may raise) or returns ``answer`` if it is a
    response; ``Recorder(status, body, headers)`` answers JSON ``body``, or ``default_body(request)`` when
    no body is given (a subclass sets the canned answer of its upstream). ``body`` is the JSON of the last
    request sent.
    """

    def __init__(
        self,
        status: int | httpx.Response | Answer = 200,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = status
        self.reply_body, self.headers = body, headers

    def default_body(self, request: httpx.Request) -> Any:
        """The JSON answered when no body was given."""
        return {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if isinstance(self.answer, httpx.Response):
            return self.answer
        if callable(self.answer):
            return self.answer(request)
        body = self.reply_body if self.reply_body is not None else self.default_body(request)
        return httpx.Response(self.answer, json=body, headers=self.headers)

    @property
    def body(self) -> Any:
        """The JSON body of the last request."""
        return json.loads(self.requests[-1].content)
