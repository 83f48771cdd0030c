"""Result downloads end to end: a job the real worker finished, read back through a real ``imagegen api``
process (its own stack, with bearer tokens on): the entry's new fields, the exact bytes, 304, the 404s
and the 401."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.stack import Stack, stack_of_its_own

pytestmark = pytest.mark.pipeline

TOKEN = "results-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_of_its_own(database_factory(), tmp_path_factory, with_api=True, IMAGEGEN_API_TOKENS=TOKEN) as stack:
        yield stack


@pytest.fixture(scope="module")
def finished(api_stack: Stack) -> tuple[str, dict[str, Any]]:
    """A job the worker took through submit, poll and download, and its first result entry as served."""
    job_id = api_stack.submit(api_stack.prompt("downloadable [[instant]]"))
    job = api_stack.wait(job_id)
    assert job.status == "succeeded", job.error_message
    shown = httpx.get(f"{api_stack.api_url}/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    assert shown.status_code == 200
    return job_id, shown.json()["result"][0]


def test_the_job_json_describes_the_stored_copy(api_stack: Stack, finished: tuple[str, dict[str, Any]]) -> None:
    job_id, entry = finished
    row = (api_stack.job(job_id).result or [])[0]
    assert entry["url"] == row["url"] and entry["path"] == row["path"]
    assert entry["sha256"] == row["sha256"] and entry["bytes"] == row["size"]
    assert entry["content_type"] == "image/png"
    # The stack's API is the IMAGEGEN_PUBLIC_URL (providers call it back): hrefs are absolute under it.
    assert entry["href"] == f"{api_stack.api_url}/v1/jobs/{job_id}/images/0"
    assert isinstance(entry["width"], int) and isinstance(entry["height"], int)


def test_the_download_is_the_exact_stored_bytes(api_stack: Stack, finished: tuple[str, dict[str, Any]]) -> None:
    _, entry = finished
    got = httpx.get(entry["href"], headers=AUTH, timeout=10)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == entry["sha256"]
    assert len(got.content) == entry["bytes"] == int(got.headers["content-length"])
    assert got.headers["content-type"] == "image/png"
    assert got.headers["etag"] == f'"{entry["sha256"]}"'
    with Image.open(io.BytesIO(got.content)) as image:
        assert image.size == (entry["width"], entry["height"])
    again = httpx.get(entry["href"], headers={**AUTH, "If-None-Match": got.headers["etag"]}, timeout=10)
    assert (again.status_code, again.content) == (304, b"")


def test_missing_images_and_jobs_are_404_and_no_token_is_401(
    api_stack: Stack, finished: tuple[str, dict[str, Any]]
) -> None:
    job_id, entry = finished
    base = api_stack.api_url
    assert httpx.get(f"{base}/v1/jobs/{job_id}/images/1", headers=AUTH, timeout=10).status_code == 404
    assert httpx.get(f"{base}/v1/jobs/{uuid.uuid4()}/images/0", headers=AUTH, timeout=10).status_code == 404
    refused = httpx.get(entry["href"], timeout=10)
    assert (refused.status_code, refused.headers["www-authenticate"]) == (401, "Bearer")
