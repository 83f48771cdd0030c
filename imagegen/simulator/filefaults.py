"""Result-file directives: how ``GET /files/{task_id}.png`` answers once the task has finished.

Real storage and CDNs do not always hand back a clean ``image/png``; these prompt tokens script that
(scoped like every directive, e.g. ``[[image2:file404]]``):

* ``file<code>`` / ``file<code>xN``: HTTP ``<code>`` (400-599) for every file GET, or for the first N;
* ``fileoctet`` / ``filebinary`` / ``filenotype``: the image as ``application/octet-stream``,
  ``binary/octet-stream``, or without a ``Content-Type`` header (S3 and CDNs do all three);
* ``filehtml``: a ``text/html`` page instead of the image (a login wall, an error page);
* ``filejunk``: declared ``image/png`` but the bytes are not an image (also applies to the OpenAI
  fake's ``b64_json``);
* ``slowfile:S``: the image trickles out over S seconds (headers at once, then a few bytes at a time).

Parsed from the tokens the task already keeps, so no other directive code needs to know about them.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from fastapi.responses import Response, StreamingResponse

from .directives import PROVIDER_SCOPES

Body = Literal["image", "html", "junk"]

#: Not an image in any format a result check knows (and not empty: an empty body is another case).
JUNK = b"\x00\x01this is not an image, whatever the header says\n" * 4
HTML = b"<!doctype html><html><body><h1>Access denied</h1></body></html>\n"
#: Longest gap between two trickled chunks: well below any client read timeout, so only the whole
#: download is slow, never a single read.
_MAX_GAP_S = 0.25

_STATUS_RE = re.compile(r"file(?P<code>[45]\d\d)(?:x(?P<n>\d+))?")
_SLOW_RE = re.compile(r"slowfile:(?P<s>\d+(?:\.\d+)?)")
_TYPES: dict[str, str | None] = {
    "fileoctet": "application/octet-stream",
    "filebinary": "binary/octet-stream",
    "filenotype": None,
}


@dataclass(frozen=True)
class FilePlan:
    """How one task's result file is served (defaults: a normal PNG)."""

    status: int | None = None
    status_count: int | None = None  # None: every GET
    content_type: str | None = "image/png"  # None: no Content-Type header at all
    body: Body = "image"
    trickle_s: float = 0.0

    def status_for(self, index: int) -> int | None:
        """The injected status for the ``index``-th (0-based) GET of this file, if any."""
        if self.status is None or (self.status_count is not None and index >= self.status_count):
            return None
        return self.status


def parse_file_plan(tokens: Sequence[str], provider: str = "apidot") -> FilePlan:
    """The file plan of a prompt's tokens as ``provider`` sees them (later tokens win)."""
    status: int | None = None
    count: int | None = None
    content_type: str | None = "image/png"
    body: Body = "image"
    trickle = 0.0
    for token in tokens:
        word = token.lower().replace(" ", "")
        scope, sep, rest = word.partition(":")
        if sep and scope in PROVIDER_SCOPES:
            if scope != provider:
                continue
            word = rest
        if (match := _STATUS_RE.fullmatch(word)) is not None:
            status, n = int(match.group("code")), match.group("n")
            count = int(n) if n is not None else None
        elif (match := _SLOW_RE.fullmatch(word)) is not None:
            trickle = float(match.group("s"))
        elif word in _TYPES:
            content_type = _TYPES[word]
        elif word == "filehtml":
            body, content_type = "html", "text/html; charset=utf-8"
        elif word == "filejunk":
            body = "junk"
    return FilePlan(status, count, content_type, body, trickle)


def file_body(plan: FilePlan, image: bytes) -> bytes:
    """The bytes served for ``plan`` (``image`` is the task's real PNG)."""
    return {"image": image, "html": HTML, "junk": JUNK}[plan.body]


def result_bytes(tokens: Sequence[str], provider: str, image: bytes) -> bytes:
    """The image bytes a synchronous fake answers with (``filejunk`` swaps them for junk)."""
    return file_body(parse_file_plan(tokens, provider), image)


def file_response(plan: FilePlan, image: bytes) -> Response:
    """The 200 answer for ``plan``: at once, or trickled over ``plan.trickle_s`` seconds."""
    data = file_body(plan, image)
    headers = {"content-length": str(len(data))}
    if plan.trickle_s <= 0:
        response = Response(data, 200, headers=headers)
    else:
        response = StreamingResponse(_trickle(data, plan.trickle_s), 200, headers=headers)
    # Starlette adds no Content-Type without a media type: exactly the "no type" case.
    if plan.content_type is not None:
        response.headers["content-type"] = plan.content_type
    return response


async def _trickle(data: bytes, seconds: float) -> AsyncIterator[bytes]:
    chunks = max(2, min(len(data), math.ceil(seconds / _MAX_GAP_S)))
    size = math.ceil(len(data) / chunks)
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    gap = seconds / len(pieces)
    for piece in pieces:
        await asyncio.sleep(gap)
        yield piece
