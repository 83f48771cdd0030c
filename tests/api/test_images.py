"""``GET /v1/jobs/{id}/images/{n}`` on the local store: the bytes, their headers, 304, Range, HEAD, every
404, refused paths, auth, and the result entries' new fields in the job JSON."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from imagegen.runtime import Runtime
from tests.support.api import UNREACHABLE_REDIS, ClientFactory
from tests.support.results import finished_job, image_bytes, set_result

PNG = image_bytes(48, 32)
JPEG = image_bytes(20, 10, "JPEG")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The tier's settings with a results directory of the test's own."""
    return Settings(
        database_url=f"sqlite:///{tmp_path}/t.db",
        redis_url=UNREACHABLE_REDIS,
        imagegen_api_tokens="",
        imagegen_results_dir=tmp_path / "results",
    )


def test_the_stored_bytes_with_their_type_length_and_etag(runtime: Runtime, client: TestClient) -> None:
    job_id, _ = finished_job(runtime, [PNG, JPEG])
    for n, (data, content_type) in enumerate([(PNG, "image/png"), (JPEG, "image/jpeg")]):
        got = client.get(f"/v1/jobs/{job_id}/images/{n}")
        assert got.status_code == 200
        assert got.content == data
        assert got.headers["content-type"] == content_type
        assert got.headers["content-length"] == str(len(data))
        assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'


def test_the_job_json_describes_each_stored_copy(runtime: Runtime, client: TestClient) -> None:
    job_id, result = finished_job(runtime, [PNG], pending=1)
    entries = client.get(f"/v1/jobs/{job_id}").json()["result"]
    assert entries[0] == {
        "url": "https://cdn.example/0.png",
        "path": result[0]["path"],
        "sha256": hashlib.sha256(PNG).hexdigest(),
        "bytes": len(PNG),
        "content_type": "image/png",
        "width": 48,
        "height": 32,
        "href": f"/v1/jobs/{job_id}/images/0",
    }
    assert entries[1]["path"] is None and entries[1]["href"] is None
    assert client.get(entries[0]["href"]).content == PNG


def test_hrefs_are_absolute_under_the_public_url(runtime: Runtime, make_client: ClientFactory) -> None:
    job_id, _ = finished_job(runtime, [PNG])
    client = make_client(imagegen_public_url="https://imagegen.example.com/")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["result"][0]["href"] == f"https://imagegen.example.com/v1/jobs/{job_id}/images/0"


def test_if_none_match_is_304_without_a_body(runtime: Runtime, client: TestClient) -> None:
    job_id, _ = finished_job(runtime, [PNG])
    etag = client.get(f"/v1/jobs/{job_id}/images/0").headers["etag"]
    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        again = client.get(f"/v1/jobs/{job_id}/images/0", headers={"If-None-Match": header})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag), header
    assert client.get(f"/v1/jobs/{job_id}/images/0", headers={"If-None-Match": '"nope"'}).status_code == 200


def test_head_and_range(runtime: Runtime, client: TestClient) -> None:
    job_id, _ = finished_job(runtime, [PNG])
    head = client.head(f"/v1/jobs/{job_id}/images/0")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(PNG)) and head.headers["content-type"] == "image/png"
    part = client.get(f"/v1/jobs/{job_id}/images/0", headers={"Range": "bytes=0-7"})
    assert (part.status_code, part.content) == (206, PNG[:8])


def test_unknown_jobs_missing_images_and_pending_ones_are_404(runtime: Runtime, client: TestClient) -> None:
    job_id, _ = finished_job(runtime, [PNG], pending=1)
    for path in (
        f"/v1/jobs/{uuid.uuid4()}/images/0",
        "/v1/jobs/not-a-uuid/images/0",
        f"/v1/jobs/{job_id}/images/1",  # listed, not downloaded yet
        f"/v1/jobs/{job_id}/images/2",
        f"/v1/jobs/{job_id}/images/{10**30}",
    ):
        assert client.get(path).status_code == 404, path
        assert client.head(path).status_code == 404, path
    assert client.get(f"/v1/jobs/{job_id}/images/-1").status_code == 422
    no_images, _ = finished_job(runtime, [])
    assert client.get(f"/v1/jobs/{no_images}/images/0").status_code == 404


def test_a_file_gone_from_disk_is_404(runtime: Runtime, client: TestClient) -> None:
    job_id, result = finished_job(runtime, [PNG])
    Path(result[0]["path"]).unlink()
    assert client.get(f"/v1/jobs/{job_id}/images/0").status_code == 404


@pytest.mark.parametrize("crafted", ["/etc/passwd", "{root}/../t.db", "{root}/{job}/../../t.db", "s3://b/k/0.png"])
def test_a_tampered_path_is_never_served(runtime: Runtime, client: TestClient, crafted: str) -> None:
    job_id, result = finished_job(runtime, [PNG])
    root = runtime.settings.results_dir
    set_result(runtime, job_id, [{**result[0], "path": crafted.format(root=root, job=job_id)}])
    got = client.get(f"/v1/jobs/{job_id}/images/0")
    assert got.status_code == 404
    assert got.json() == {"detail": "image not found"}


def test_a_symlink_planted_in_the_results_directory_is_never_served(runtime: Runtime, client: TestClient) -> None:
    job_id, result = finished_job(runtime, [PNG])
    stored = Path(result[0]["path"])
    stored.unlink()
    stored.symlink_to("/etc/passwd")
    assert client.get(f"/v1/jobs/{job_id}/images/0").status_code == 404


def test_the_route_takes_the_intake_tokens(runtime: Runtime, make_client: ClientFactory) -> None:
    job_id, _ = finished_job(runtime, [PNG])
    guarded = make_client(imagegen_api_tokens="t1")
    path = f"/v1/jobs/{job_id}/images/0"
    for headers in ({}, {"Authorization": "Bearer nope"}):
        refused = guarded.get(path, headers=headers)
        assert (refused.status_code, refused.headers["www-authenticate"]) == (401, "Bearer")
    assert guarded.get(f"/v1/jobs/{uuid.uuid4()}/images/0").status_code == 401, "no probing for job ids"
    assert guarded.get(path, headers={"Authorization": "Bearer t1"}).content == PNG


def test_a_row_pointing_at_another_jobs_file_is_never_served(runtime: Runtime, client: TestClient) -> None:
    mine, _ = finished_job(runtime, [PNG])
    theirs, their_result = finished_job(runtime, [PNG])
    set_result(runtime, mine, [their_result[0]])
    assert client.get(f"/v1/jobs/{theirs}/images/0").status_code == 200
    assert client.get(f"/v1/jobs/{mine}/images/0").status_code == 404


def test_a_tampered_digest_never_becomes_header_syntax(runtime: Runtime, client: TestClient) -> None:
    job_id, result = finished_job(runtime, [PNG])
    set_result(runtime, job_id, [{**result[0], "sha256": 'x", W/"y'}])
    got = client.get(f"/v1/jobs/{job_id}/images/0")
    # Starlette's own ETag (from the file's stat) stands in: never the row's text.
    assert got.status_code == 200 and "W/" not in got.headers.get("etag", "")


def test_a_wrong_method_lists_get_and_head(runtime: Runtime, client: TestClient) -> None:
    job_id, _ = finished_job(runtime, [PNG])
    got = client.put(f"/v1/jobs/{job_id}/images/0")
    assert got.status_code == 405
    assert {m.strip() for m in got.headers["allow"].split(",")} == {"GET", "HEAD"}
