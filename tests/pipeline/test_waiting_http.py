"""Sync wait and live status through a real ``imagegen api``, worker, Redis and simulator.

``Prefer: wait=N`` must answer as soon as the worker commits the ending, woken by the Redis
announcement, not by the waiter's slow re-read (``api.waiting``: 30 s while subscribed, 5 s while
not): the timings below would fail if the wake-up were lost. ``GET /v1/jobs/{id}/events`` streams the same changes as
Server-Sent Events.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from imagegen.api.events import WATCHED
from imagegen.api.waiting import REREAD_S
from tests.support.stack import Stack, revive_worker, tenant_api_stack
from tests.support.tenancy import ADMIN_TOKEN, auth

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def own_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with tenant_api_stack(database_factory(), tmp_path_factory) as stack:
        yield stack


@pytest.fixture
def api(own_stack: Stack) -> Iterator[httpx.Client]:
    revive_worker(own_stack)
    assert own_stack.api_url is not None
    with httpx.Client(base_url=own_stack.api_url, timeout=60) as client:
        yield client


def _finished(job: dict[str, Any]) -> float:
    return datetime.fromisoformat(job["finished_at"]).timestamp()


def test_prefer_wait_answers_when_the_job_ends_not_at_the_next_reread(own_stack: Stack, api: httpx.Client) -> None:
    body = {"prompt": own_stack.prompt("waited for [[slow:1.5]]")}
    started = time.monotonic()
    response = api.post("/v1/jobs", json=body, headers={**auth("tok-a"), "Prefer": "wait=30"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded" and job["result"], job
    assert response.headers["Preference-Applied"] == "wait=30"
    assert "Location" not in response.headers
    # Answered right after the commit: a lost wake-up would cost up to REREAD_S more.
    assert time.time() - _finished(job) < 1.5, "the answer came long after the job ended"
    assert elapsed < REREAD_S + 1.5


def test_prefer_wait_runs_out_with_202_and_a_location(own_stack: Stack, api: httpx.Client) -> None:
    body = {"prompt": own_stack.prompt("waited in vain [[never]]")}
    started = time.monotonic()
    response = api.post("/v1/jobs", json=body, headers={**auth("tok-a"), "Prefer": "respond-async, wait=2"})
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] in {"queued", "submitting", "running"}
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert response.headers["Preference-Applied"] == "wait=2"
    assert 1.9 <= elapsed < 4.5
    api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth("tok-a"))


def test_a_repeated_key_waits_on_the_existing_job(own_stack: Stack, api: httpx.Client) -> None:
    body = {"prompt": own_stack.prompt("keyed [[slow:1]]"), "idempotency_key": f"wait-{time.time_ns()}"}
    first = api.post("/v1/jobs", json=body, headers=auth("tok-a"))
    assert first.status_code == 202
    again = api.post("/v1/jobs", json=body, headers={**auth("tok-a"), "Prefer": "wait=30"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "succeeded"


def test_a_cancel_from_elsewhere_ends_the_wait(own_stack: Stack, api: httpx.Client) -> None:
    """The API's own commit (a cancel) is announced too: the waiter answers right after it."""
    answer: dict[str, Any] = {}

    def wait() -> None:
        with httpx.Client(base_url=str(api.base_url), timeout=60) as waiter:
            body = {"prompt": own_stack.prompt("to cancel [[never]]"), "idempotency_key": key}
            response = waiter.post("/v1/jobs", json=body, headers={**auth("tok-a"), "Prefer": "wait=60"})
            answer.update(response.json(), code=response.status_code, at=time.monotonic())

    key = f"cancel-{time.time_ns()}"
    thread = threading.Thread(target=wait)
    thread.start()
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not found and time.monotonic() < deadline:
        found = [j for j in api.get("/v1/jobs", headers=auth("tok-a")).json()["jobs"] if j["idempotency_key"] == key]
        time.sleep(0.1)
    assert found
    time.sleep(0.5)  # the waiter is asleep now
    canceled_at = time.monotonic()
    assert api.post(f"/v1/jobs/{found[0]['id']}/cancel", headers=auth("tok-a")).status_code == 200
    thread.join(30)
    assert answer["code"] == 200 and answer["status"] == "canceled"
    assert answer["at"] - canceled_at < 1.5


def test_wait_zero_does_not_wait(own_stack: Stack, api: httpx.Client) -> None:
    body = {"prompt": own_stack.prompt("no wait [[never]]")}
    response = api.post("/v1/jobs", json=body, headers={**auth("tok-a"), "Prefer": "wait=0"})
    assert response.status_code == 202 and response.headers["Preference-Applied"] == "wait=0"
    api.post(f"/v1/jobs/{response.json()['id']}/cancel", headers=auth("tok-a"))


def _events(api: httpx.Client, job_id: str, token: str) -> tuple[list[tuple[str, dict[str, Any], float]], float]:
    """Every event of the stream with its arrival time, and when the stream closed."""
    out: list[tuple[str, dict[str, Any], float]] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth(token), timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event, data = "", ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and event:
                out.append((event, json.loads(data), time.time()))
                event, data = "", ""
    return out, time.time()


def test_events_stream_every_change_then_end_and_close(own_stack: Stack, api: httpx.Client) -> None:
    created = api.post("/v1/jobs", json={"prompt": own_stack.prompt("followed [[slow:2]]")}, headers=auth("tok-a"))
    job_id = created.json()["id"]
    events, closed = _events(api, job_id, "tok-a")
    names = [e for e, _, _ in events]
    assert names[-1] == "end" and set(names[:-1]) <= {"status"}, names
    statuses = [d["status"] for _, d, _ in events]
    assert "running" in statuses and statuses[-1] == "succeeded", statuses
    final = events[-1][1]
    assert final["id"] == job_id and final["result"]
    assert events[-1][2] - _finished(final) < 1.5, "the end event came long after the job ended"
    assert closed - events[-1][2] < 1.0
    # No two consecutive events say the same thing.
    seen = [tuple(json.dumps(d[k]) for k in WATCHED) for _, d, _ in events]
    assert all(a != b for a, b in itertools.pairwise(seen)), seen


def test_events_of_an_ended_job_are_one_end_event(own_stack: Stack, api: httpx.Client) -> None:
    created = api.post(
        "/v1/jobs",
        json={"prompt": own_stack.prompt("done [[instant]]")},
        headers={**auth("tok-a"), "Prefer": "wait=30"},
    )
    assert created.json()["status"] == "succeeded"
    events, _ = _events(api, created.json()["id"], "tok-a")
    assert [e for e, _, _ in events] == ["end"]


def test_events_and_wait_keep_tenants_apart(own_stack: Stack, api: httpx.Client) -> None:
    created = api.post("/v1/jobs", json={"prompt": own_stack.prompt("a's own [[never]]")}, headers=auth("tok-a"))
    job_id = created.json()["id"]
    assert api.get(f"/v1/jobs/{job_id}/events", headers=auth("tok-b")).status_code == 404
    with api.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth(ADMIN_TOKEN)) as response:
        assert response.status_code == 200
        assert next(response.iter_lines()) == "retry: 5000"
    assert api.get(f"/v1/jobs/{job_id}/events").status_code == 401
    api.post(f"/v1/jobs/{job_id}/cancel", headers=auth("tok-a"))


def test_a_held_key_ends_the_wait_with_the_held_job(own_stack: Stack, api: httpx.Client) -> None:
    body = {"prompt": own_stack.prompt("no credit [[402]]"), "provider": "image2"}
    response = api.post("/v1/jobs", json=body, headers={**auth("tok-a"), "Prefer": "wait=30"})
    try:
        assert response.status_code == 200, response.text
        job = response.json()
        assert job["status"] == "held" and job["error"]["kind"] == "insufficient_credits", job
    finally:
        api.post(f"/v1/jobs/{response.json()['id']}/cancel", headers=auth("tok-a"))
        api.post("/v1/providers/image2/resume", headers=auth(ADMIN_TOKEN))
