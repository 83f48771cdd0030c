"""``GET /v1/jobs/{id}/images/{n}`` with S3 storage, against moto's S3 server over real HTTP: a 302 to a
presigned URL, signed for IMAGEGEN_S3_PRESIGN_S seconds, that downloads the stored bytes. (moto does not
enforce expiry, so the signed ``X-Amz-Expires`` is what is checked.)"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from config.settings import Settings
from imagegen.runtime import Runtime
from imagegen.storage import S3Store, s3_client
from tests.support.api import UNREACHABLE_REDIS
from tests.support.results import finished_job, image_bytes, set_result

BUCKET = "imagegen-results"
PRESIGN_S = 90
PNG = image_bytes(40, 30)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 (and only that: nothing is patched) on a free port of this host."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # boto3 reads its credentials from the environment itself; moto takes any.
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3_client(s3_endpoint, "us-east-1").create_bucket(Bucket=BUCKET)
    return Settings(
        database_url=f"sqlite:///{tmp_path}/t.db",
        redis_url=UNREACHABLE_REDIS,
        imagegen_api_tokens="",
        imagegen_s3_bucket=BUCKET,
        imagegen_s3_endpoint_url=s3_endpoint,
        imagegen_s3_region="us-east-1",
        imagegen_s3_presign_s=PRESIGN_S,
    )


def _redirect(client: TestClient, job_id: str, **headers: str) -> httpx.Response:
    return client.get(f"/v1/jobs/{job_id}/images/0", headers=headers, follow_redirects=False)


def test_a_302_to_a_presigned_url_that_returns_the_bytes(runtime: Runtime, client: TestClient) -> None:
    assert isinstance(runtime.store, S3Store)
    job_id, result = finished_job(runtime, [PNG])
    assert result[0]["path"] == f"s3://{BUCKET}/imagegen/{job_id}/0.png"
    entry = client.get(f"/v1/jobs/{job_id}").json()["result"][0]
    assert entry["href"] == f"/v1/jobs/{job_id}/images/0" and entry["sha256"] == hashlib.sha256(PNG).hexdigest()

    moved = _redirect(client, job_id)
    assert moved.status_code == 302
    assert moved.headers["etag"] == f'"{entry["sha256"]}"'
    assert moved.headers["cache-control"] == "no-store"
    location = moved.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == [str(PRESIGN_S)]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]

    # A plain client, no credentials: the signature in the URL is the authorisation.
    download = httpx.get(location, timeout=10)
    assert download.status_code == 200
    assert download.content == PNG
    assert hashlib.sha256(download.content).hexdigest() == entry["sha256"]
    assert download.headers["content-type"] == "image/png"


def test_if_none_match_is_answered_before_any_redirect(runtime: Runtime, client: TestClient) -> None:
    job_id, _ = finished_job(runtime, [PNG])
    etag = _redirect(client, job_id).headers["etag"]
    assert _redirect(client, job_id, **{"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize(
    "crafted",
    ["s3://another-bucket/imagegen/{job}/0.png", "s3://" + BUCKET + "/elsewhere/secret", "/etc/passwd"],
)
def test_a_path_outside_the_bucket_and_prefix_is_404(runtime: Runtime, client: TestClient, crafted: str) -> None:
    job_id, result = finished_job(runtime, [PNG])
    set_result(runtime, job_id, [{**result[0], "path": crafted.format(job=job_id)}])
    assert _redirect(client, job_id).status_code == 404
