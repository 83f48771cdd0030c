"""``POST /v1/jobs`` and ``GET /v1/jobs/{id}``: 202 + job JSON, idempotency, 422 naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from imagegen.constants import SUBMIT_TASK
from imagegen.runtime import Runtime
from tests.support.api import ClientFactory, count_jobs
from tests.support.contract import JOB_KEYS as CONTRACT_KEYS
from tests.support.recorder import RecordingPublisher

#: The job JSON keys of the public contract plus the extras jobview adds.
JOB_KEYS = CONTRACT_KEYS | {
    "priority",
    "idempotency_key",
    "progress",
    "last_error",
    "next_attempt_at",
    "tenant",
    "queue_position",
}


def test_post_job_queues_and_publishes_one_submit(client: TestClient, publisher: RecordingPublisher) -> None:
    response = client.post("/v1/jobs", json={"prompt": "a cat", "quality": "low", "metadata": {"order": 7}})
    assert response.status_code == 202
    job = response.json()
    assert set(job) == JOB_KEYS
    assert job["status"] == "queued"
    assert job["provider"] == "apidot" and job["model"] == "gpt-image-2" and job["priority"] == "interactive"
    assert job["metadata"] == {"order": 7}
    assert job["request"]["prompt"] == "a cat"
    assert job["result"] == [] and job["error"] is None and job["submit_attempts"] == 0
    assert job["created_at"].endswith("+00:00") and job["deadline_at"] > job["created_at"]
    assert [(s.task, s.job_id, s.queue) for s in publisher.steps] == [(SUBMIT_TASK, job["id"], "interactive")]


def test_batch_priority_goes_to_the_batch_queue(client: TestClient, publisher: RecordingPublisher) -> None:
    response = client.post("/v1/jobs", json={"prompt": "a cat", "priority": "batch"})
    assert response.status_code == 202
    assert publisher.steps[0].queue == "batch"


def test_get_job_returns_the_same_json(client: TestClient) -> None:
    created = client.post("/v1/jobs", json={"prompt": "a dog"}).json()
    response = client.get(f"/v1/jobs/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_repeated_idempotency_key_returns_the_existing_job(
    client: TestClient, publisher: RecordingPublisher, runtime: Runtime
) -> None:
    first = client.post("/v1/jobs", json={"prompt": "once", "idempotency_key": "k-1"})
    second = client.post("/v1/jobs", json={"prompt": "once", "idempotency_key": "k-1"})
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["id"] == first.json()["id"]
    assert len(publisher.steps) == 1
    assert count_jobs(runtime) == 1


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"prompt": "a cat", "size": "huge"}, ["body", "size"]),
        ({"prompt": "a cat", "model": "gpt-image-2-edit", "image_urls": ["http://example.com/a.png"]}, None),
        ({"prompt": "a cat", "colour": "red"}, ["body", "colour"]),
        ({"prompt": ""}, ["body", "prompt"]),
        ({"prompt": "   "}, ["body", "prompt"]),
        ({}, ["body", "prompt"]),
        ({"prompt": 5}, ["body", "prompt"]),
        ({"prompt": "a cat", "fallback": ["apidot"]}, ["body", "fallback", 0]),
        ([{"prompt": "a cat"}], ["body"]),
        ("a cat", ["body"]),
        (None, ["body"]),
    ],
)
def test_invalid_request_is_422_naming_the_field(
    client: TestClient, publisher: RecordingPublisher, runtime: Runtime, body: Any, loc: list[Any] | None
) -> None:
    loc = loc or ["body", "image_urls", 0]
    response = client.post("/v1/jobs", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert loc in [d["loc"] for d in detail]
    assert all(d["type"] == "value_error" and d["msg"] for d in detail)
    assert count_jobs(runtime) == 0
    assert publisher.steps == []


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"prompt": NaN}', b'{"prompt": "\\ud800"}', b"\xff\xfe", b"[" * 100_000, b"9" * 5000],
)
def test_body_that_is_not_json_is_422_naming_body(
    client: TestClient, publisher: RecordingPublisher, runtime: Runtime, raw: bytes
) -> None:
    response = client.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [["body"]]
    assert count_jobs(runtime) == 0 and publisher.steps == []


def test_private_http_urls_follow_the_setting(make_client: ClientFactory) -> None:
    body = {"prompt": "a cat", "callback_url": "http://127.0.0.1:9/hook"}
    assert make_client().post("/v1/jobs", json=body).status_code == 422
    assert make_client(imagegen_allow_private_urls=True).post("/v1/jobs", json=body).status_code == 202


@pytest.mark.parametrize("job_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "%20"])
def test_unknown_job_is_404(client: TestClient, job_id: str) -> None:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": "job not found"}


def test_database_down_is_503_without_a_traceback(make_client: ClientFactory, runtime: Runtime) -> None:
    import sqlalchemy as sa

    from imagegen.store.db import make_sessionmaker

    # An engine on a file that cannot be opened: every session fails like a database outage.
    runtime.engine.dispose()
    runtime.engine = sa.create_engine("sqlite:////proc/imagegen-nowhere/t.db")
    runtime.sessions = make_sessionmaker(runtime.engine)
    client = make_client()
    for response in (
        client.post("/v1/jobs", json={"prompt": "a cat"}),
        client.get("/v1/jobs/00000000-0000-4000-8000-000000000000"),
        client.post("/v1/batches", json={"requests": [{"prompt": "a cat"}]}),
    ):
        assert response.status_code == 503
        assert response.json() == {"detail": "database unavailable"}


def test_the_same_idempotency_key_with_a_different_request_is_409_naming_the_key(
    client: TestClient, publisher: RecordingPublisher, runtime: Runtime
) -> None:
    first = client.post("/v1/jobs", json={"prompt": "a red fox", "idempotency_key": "order-77"})
    other = client.post("/v1/jobs", json={"prompt": "a blue whale", "idempotency_key": "order-77"})
    assert other.status_code == 409, other.text
    assert "order-77" in other.json()["detail"] and "different request" in other.json()["detail"]
    again = client.post("/v1/jobs", json={"prompt": "a red fox", "idempotency_key": "order-77"})
    assert (first.status_code, again.status_code, again.json()["id"]) == (202, 200, first.json()["id"])
    assert count_jobs(runtime) == 1 and len(publisher.steps) == 1
