"""``POST /v1/batches`` (all-or-nothing) and ``GET /v1/batches/{id}``."""

from __future__ import annotations

from fastapi.testclient import TestClient

from imagegen.constants import SUBMIT_TASK
from imagegen.runtime import Runtime
from tests.support.api import count_jobs
from tests.support.recorder import RecordingPublisher


def test_batch_queues_every_request_on_the_batch_queue(client: TestClient, publisher: RecordingPublisher) -> None:
    items = [{"prompt": "one"}, {"prompt": "two", "quality": "high"}, {"prompt": "3", "priority": "interactive"}]
    body = {"requests": items}
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 202
    created = response.json()
    assert set(created) == {"batch_id", "jobs"} and len(created["jobs"]) == 3
    assert [(s.task, s.job_id) for s in publisher.steps] == [(SUBMIT_TASK, j) for j in created["jobs"]]
    # Batch items default to priority batch; an explicit priority wins.
    assert [s.queue for s in publisher.steps] == ["batch", "batch", "interactive"]


def test_one_bad_item_rejects_the_whole_batch(
    client: TestClient, publisher: RecordingPublisher, runtime: Runtime
) -> None:
    body = {
        "requests": [
            {"prompt": "fine"},
            {"prompt": "bad size", "size": "huge"},
            {"prompt": "fine too"},
            {"prompt": "", "image_urls": ["http://example.com/a.png"], "model": "gpt-image-2-edit"},
        ]
    }
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 422
    locs = [d["loc"] for d in response.json()["detail"]]
    assert ["body", "requests", 1, "size"] in locs
    assert ["body", "requests", 3, "prompt"] in locs
    assert ["body", "requests", 3, "image_urls", 0] in locs
    assert all(loc[2] in (1, 3) for loc in locs)
    assert count_jobs(runtime) == 0 and publisher.steps == []


def test_batch_body_shape_errors(client: TestClient, runtime: Runtime) -> None:
    cases = [
        ({}, ["body", "requests"]),
        ({"requests": []}, ["body", "requests"]),
        ({"requests": "x"}, ["body", "requests"]),
        ({"requests": [{"prompt": "a"}], "extra": 1}, ["body", "extra"]),
        ({"requests": ["a cat"]}, ["body", "requests", 0]),
        ([{"prompt": "a"}], ["body"]),
    ]
    for body, loc in cases:
        response = client.post("/v1/batches", json=body)
        assert response.status_code == 422, body
        assert loc in [d["loc"] for d in response.json()["detail"]], body
    too_many = {"requests": [{"prompt": "x"}] * 10_001}
    assert client.post("/v1/batches", json=too_many).status_code == 422
    assert count_jobs(runtime) == 0


def test_get_batch_counts_and_jobs(client: TestClient) -> None:
    created = client.post("/v1/batches", json={"requests": [{"prompt": "a"}, {"prompt": "b"}]}).json()
    client.post("/v1/jobs", json={"prompt": "not in the batch"})
    response = client.get(f"/v1/batches/{created['batch_id']}")
    assert response.status_code == 200
    batch = response.json()
    assert batch["batch_id"] == created["batch_id"]
    assert batch["counts"] == {"queued": 2}
    assert sorted(j["id"] for j in batch["jobs"]) == sorted(created["jobs"])
    assert all(j["batch_id"] == created["batch_id"] and j["priority"] == "batch" for j in batch["jobs"])


def test_repeated_idempotency_key_in_a_batch_keeps_the_existing_job(
    client: TestClient, publisher: RecordingPublisher, runtime: Runtime
) -> None:
    first = client.post("/v1/jobs", json={"prompt": "a", "idempotency_key": "same"}).json()
    items = [{"prompt": "a", "idempotency_key": "same"}, {"prompt": "b"}]
    created = client.post("/v1/batches", json={"requests": items})
    assert created.status_code == 202
    assert created.json()["jobs"][0] == first["id"]
    assert count_jobs(runtime) == 2
    assert [s.job_id for s in publisher.steps] == [first["id"], created.json()["jobs"][1]]


def test_unknown_batch_is_404(client: TestClient) -> None:
    for batch_id in ("00000000-0000-4000-8000-000000000000", "nope"):
        response = client.get(f"/v1/batches/{batch_id}")
        assert response.status_code == 404
        assert response.json() == {"detail": "batch not found"}


def test_a_batch_item_reusing_a_key_for_a_different_request_is_409_and_writes_nothing(
    client: TestClient, publisher: RecordingPublisher, runtime: Runtime
) -> None:
    client.post("/v1/jobs", json={"prompt": "a", "idempotency_key": "same"})
    items = [{"prompt": "b"}, {"prompt": "not a", "idempotency_key": "same"}]
    response = client.post("/v1/batches", json={"requests": items})
    assert response.status_code == 409, response.text
    assert "same" in response.json()["detail"]
    assert count_jobs(runtime) == 1 and len(publisher.steps) == 1


def test_a_replayed_batch_answers_with_the_first_batch_and_publishes_nothing(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    """A client that resends its batch (same keys, same requests) gets the batch it made the first time:
    its counts, its jobs, its callback; not an id that 404s and never finishes."""
    body = {"requests": [{"prompt": f"p{i}", "idempotency_key": f"replay-{i}"} for i in range(3)]}
    first = client.post("/v1/batches", json=body).json()
    sent = len(publisher.steps)
    again = client.post("/v1/batches", json=body)
    assert again.status_code == 202
    assert again.json() == first
    assert len(publisher.steps) == sent
    assert client.get(f"/v1/batches/{first['batch_id']}").json()["counts"] == {"queued": 3}
