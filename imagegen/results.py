"""Turning an upstream answer into stored results: download (through the URL checks) and store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagegen.fetch import fetch
from imagegen.providers import GeneratedImage
from imagegen.runtime import Runtime
from imagegen.storage import store_image


def store_results(rt: Runtime, job_id: str, images: Sequence[GeneratedImage]) -> list[dict[str, Any]]:
    """Copy every image into our storage; returns the job's ``result`` entries (upstream url + our copy).

    Raises ``UnsafeURL`` (refused for good) or ``FetchFailed`` (try again later).
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
