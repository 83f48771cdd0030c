"""``Prefer: wait`` and ``queue_position`` in process, with no Redis at all: a waiter falls back to its
slow re-read and still answers on time (the real wake-ups are tested in tests/pipeline)."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from imagegen.api import events, waiting
from imagegen.ops import actions
from imagegen.runtime import Runtime
from tests.support.api import ClientFactory


def test_without_redis_a_wait_still_runs_out_on_time(client: TestClient) -> None:
    started = time.monotonic()
    response = client.post("/v1/jobs", json={"prompt": "a cat"}, headers={"Prefer": "wait=1"})
    elapsed = time.monotonic() - started
    assert response.status_code == 202
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    assert response.headers["Preference-Applied"] == "wait=1"
    assert 0.9 <= elapsed < 3


def test_a_settled_job_answers_at_once(client: TestClient, runtime: Runtime) -> None:
    job = client.post("/v1/jobs", json={"prompt": "a cat", "idempotency_key": "k"}).json()
    assert actions.cancel(runtime, job["id"]).ok
    started = time.monotonic()
    again = client.post("/v1/jobs", json={"prompt": "a cat", "idempotency_key": "k"}, headers={"Prefer": "wait=30"})
    assert time.monotonic() - started < 1
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    assert "Location" not in again.headers


def test_a_malformed_prefer_is_ignored(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"prompt": "a cat"}, headers={"Prefer": "wait=soon"})
    assert response.status_code == 202 and "Preference-Applied" not in response.headers


def test_queued_jobs_know_roughly_how_many_go_first(client: TestClient) -> None:
    batch = client.post("/v1/jobs", json={"prompt": "bulk", "priority": "batch"}).json()
    first = client.post("/v1/jobs", json={"prompt": "one"}).json()
    second = client.post("/v1/jobs", json={"prompt": "two"}).json()
    other = client.post("/v1/jobs", json={"prompt": "elsewhere", "provider": "openai", "model": "gpt-image-2"}).json()
    assert first["queue_position"] == 0 and second["queue_position"] == 1
    position = {j: client.get(f"/v1/jobs/{j}").json()["queue_position"] for j in (batch["id"], first["id"])}
    assert position == {batch["id"]: 2, first["id"]: 0}  # interactive jobs go before the batch one
    assert other["queue_position"] == 0  # another provider is another queue
    listed = client.get("/v1/jobs").json()["jobs"]
    assert {j["queue_position"] for j in listed} == {None}  # lists do not pay a count per job
    client.post(f"/v1/jobs/{first['id']}/cancel")
    assert client.get(f"/v1/jobs/{first['id']}").json()["queue_position"] is None
    assert client.get(f"/v1/jobs/{second['id']}").json()["queue_position"] == 0


def test_an_idle_stream_sends_heartbeats_and_ends_with_the_job(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_S", 0.3)
    job = client.post("/v1/jobs", json={"prompt": "idle"}).json()
    seen: list[str] = []
    canceled = False
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        assert response.headers["cache-control"] == "no-cache"
        for line in response.iter_lines():
            seen.append(line)
            if seen.count(": heartbeat") == 2 and not canceled:
                assert actions.cancel(runtime, job["id"]).ok  # found by the re-read: no Redis here
                canceled = True
    assert seen[0] == "retry: 5000"
    frames = [s for s in seen if s.startswith("event: ")]
    assert frames == ["event: status", "event: end"]
    assert '"status":"canceled"' in seen[-2]


def test_a_stopping_process_answers_its_waits_with_202_at_once(make_client: ClientFactory) -> None:
    client = make_client()
    with client:  # runs the lifespan: the feed knows its loop
        feed = client.app.state.api.feed  # type: ignore[attr-defined]
        threading.Timer(0.5, feed.close_threadsafe).start()  # what `imagegen api` does at SIGTERM
        started = time.monotonic()
        response = client.post("/v1/jobs", json={"prompt": "a cat"}, headers={"Prefer": "wait=60"})
        assert time.monotonic() - started < 3
        assert response.status_code == 202 and response.headers["Location"].endswith(response.json()["id"])


def test_a_wait_whose_database_fails_still_names_its_job(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise OperationalError("SELECT", {}, Exception("database went away"))

    monkeypatch.setattr(waiting, "read_jobs", broken)
    response = client.post("/v1/jobs", json={"prompt": "a cat"}, headers={"Prefer": "wait=5"})
    assert response.status_code == 202
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
