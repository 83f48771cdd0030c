"""Turning an upstream answer into stored results (download through the URL checks, check, store), and
what a failed download means: try again soon, a file that seems gone, or a URL we refuse.

A job's ``result`` lists one entry per upstream file: ``{"url", "path": null}`` while it is still to be
downloaded (so a retry needs no status call), then the stored copy's description.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from imagegen.errors import (
    ContentRefused,
    DownloadFailed,
    DownloadFailure,
    ErrorKind,
    FetchFailed,
    NotAnImage,
    UnsafeURL,
)
from imagegen.net.fetch import fetch
from imagegen.providers import GeneratedImage
from imagegen.runtime import Runtime
from imagegen.storage import store_image

#: 4xx answers that say "not now" rather than "not there" (timeout, too early, rate limited).
_TRANSIENT_4XX = frozenset({408, 425, 429})


def classify(exc: BaseException) -> DownloadFailure:
    """The meaning of an exception raised while downloading or storing one result file."""
    if isinstance(exc, ContentRefused | NotAnImage):
        return DownloadFailure(str(exc), definite=True)
    if isinstance(exc, UnsafeURL):
        return DownloadFailure(f"result file refused: {exc}", refused=True)
    if isinstance(exc, FetchFailed):
        code = exc.status_code
        definite = code is not None and 400 <= code < 500 and code not in _TRANSIENT_4XX
        return DownloadFailure(f"result download failed: {exc}", code, definite=definite)
    if isinstance(exc, OSError):
        return DownloadFailure(f"storing the result failed: {type(exc).__name__}: {exc}")
    return DownloadFailure(f"result download failed: {type(exc).__name__}")


def error_kind_for(exc: BaseException) -> ErrorKind:
    """The job's error kind when a stored answer (synchronous provider) cannot be kept."""
    failure = classify(exc)
    return ErrorKind.RESULT_UNAVAILABLE if failure.definite else ErrorKind.UPSTREAM_UNAVAILABLE


def pending_entries(urls: Sequence[str]) -> list[dict[str, Any]]:
    """The ``result`` of a finished task whose files are still to be downloaded."""
    return [{"url": url, "path": None} for url in urls]


def has_pending(result: Any) -> bool:
    """Whether a job's ``result`` still lists a file to download (the upstream task already finished)."""
    return isinstance(result, list) and any(isinstance(e, dict) and e.get("path") is None for e in result)


def download_pending(
    rt: Runtime, job_id: str, entries: Sequence[dict[str, Any]], budget_s: float
) -> list[dict[str, Any]]:
    """Download and store every pending entry within ``budget_s`` seconds in all; returns the new entries.

    Raises ``DownloadFailed`` at the first failure (with what was stored so far).
    """
    deadline = time.monotonic() + budget_s
    out = [dict(entry) for entry in entries]
    for index, entry in enumerate(out):
        if entry.get("path") is not None:
            continue  # stored by an earlier attempt
        url = entry.get("url")
        try:
            if not isinstance(url, str):
                raise UnsafeURL("the result entry has no URL")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchFailed("download too slow: the job's download time budget is spent")
            policy = dataclasses.replace(rt.fetch_policy, max_seconds=remaining)
            fetched = fetch(url, policy, client=rt.fetch_client)
            stored = store_image(rt.store, job_id, index, fetched.content, fetched.content_type)
        except (UnsafeURL, FetchFailed, NotAnImage, OSError) as exc:
            raise DownloadFailed(classify(exc), out) from exc
        out[index] = {"url": url, **stored.to_dict()}
    return out


def store_results(rt: Runtime, job_id: str, images: Sequence[GeneratedImage]) -> list[dict[str, Any]]:
    """Copy every image of a synchronous answer into our storage; returns the job's ``result`` entries.

    Raises ``UnsafeURL`` (its subclass ``ContentRefused`` for a wrong type), ``FetchFailed``, ``NotAnImage``
    (bytes that are not an image, whatever their declared type) or ``OSError`` (storage); ``classify``
    says what each means.
    """
    entries: list[dict[str, Any]] = []
    for index, image in enumerate(images):
        data, declared = image.data, image.content_type
        if data is None and image.url:
            fetched = fetch(image.url, rt.fetch_policy, client=rt.fetch_client)
            data, declared = fetched.content, fetched.content_type
        if data is None:
            continue
        stored = store_image(rt.store, job_id, index, data, declared)
        entries.append({"url": image.url, **stored.to_dict()})
    return entries
