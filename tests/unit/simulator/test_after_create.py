"""Simulator directives for the submit hardening: tasks created then the answer lost, Retry-After hints
that are no hints, 404/409 faults, APIDot's other terminal labels, and the recorded Idempotency-Key."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from imagegen.simulator import SimSettings, create_app
from imagegen.simulator.directives import AfterCreate, Fault, parse_directives

AUTH = {"Authorization": "Bearer test-key", "Idempotency-Key": "job-1"}


def client() -> TestClient:
    return TestClient(create_app(SimSettings(duration_s=0)), raise_server_exceptions=False)


def submit(c: TestClient, prompt: str) -> httpx.Response:
    body = {"model": "gpt-image-2", "input": {"prompt": prompt}}
    return c.post("/api/generate/submit", json=body, headers=AUTH)


def i2_submit(c: TestClient, prompt: str) -> httpx.Response:
    body = {"model": "gpt-image-2", "prompt": prompt, "n": 1, "async": True}
    return c.post("/image2/api/v1/images/generations", json=body, headers=AUTH)


def records(c: TestClient, prompt: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = c.get("/_sim/requests", params={"prompt_contains": prompt}).json()
    return rows


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("submitstall:2.5", AfterCreate("stall", None, 2.5)),
        ("submitstallx1:3", AfterCreate("stall", 1, 3.0)),
        ("submitdrop", AfterCreate("drop", None)),
        ("submitdropx2", AfterCreate("drop", 2)),
        ("submitlost:502", AfterCreate("502", None)),
        ("submitlostx1:504", AfterCreate("504", 1)),
        ("submitlost:noid", AfterCreate("noid", None)),
        ("image2:submitlost:502", AfterCreate("502", None)),
    ],
)
def test_parse_after_create(token: str, expected: AfterCreate) -> None:
    provider = "image2" if token.startswith("image2:") else "apidot"
    assert parse_directives(f"x [[{token}]]", provider).created_faults == (expected,)
    assert parse_directives(f"x [[{token}]]", "openai").created_faults == ((expected,) if ":" not in token[:7] else ())


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("429x3:ra=0", Fault("429", 3, "seconds", 0)),
        ("429x1:ra=-5", Fault("429", 1, "seconds", -5)),
        ("429:pastdate", Fault("429", None, "pastdate")),
        ("409x1", Fault("409", 1)),
    ],
)
def test_parse_hint_and_status_faults(token: str, expected: Fault) -> None:
    assert parse_directives(f"[[{token}]]").submit_faults == (expected,)


def test_parse_poll_404_and_label() -> None:
    d = parse_directives("[[poll404x1]] [[label:completed]] [[submitlost:418]]")
    assert d.poll_faults == (Fault("404", 1),)
    assert d.status_label == "completed"
    assert d.created_faults == ()  # only 502, 504 and noid exist


@pytest.mark.parametrize("lost", ["502", "504"])
def test_lost_answer_creates_the_task(lost: str) -> None:
    c = client()
    prompt = f"x [[submitlostx1:{lost}]] {time.time()}"
    assert submit(c, prompt).status_code == int(lost)
    assert submit(c, prompt).status_code == 200
    rows = records(c, prompt)
    assert [r["status_code"] for r in rows] == [int(lost), 200]
    assert all(r["task_id"] for r in rows), "both calls created a task"
    assert len(c.get("/_sim/tasks").json()) == 2


def test_noid_answer_is_a_2xx_without_task_id_but_creates_the_task() -> None:
    c = client()
    r = submit(c, "x [[submitlost:noid]]")
    assert r.status_code == 200 and r.json() == {"code": 200, "data": {"status": "not_started"}}
    assert records(c, "submitlost")[0]["task_id"]
    r2 = i2_submit(c, "y [[submitlost:noid]]")
    assert r2.status_code == 200 and "task_id" not in r2.json()
    assert records(c, "y [[")[0]["task_id"].startswith("img2-")


def test_stall_answers_late_but_creates_the_task_first() -> None:
    c = client()
    start = time.monotonic()
    r = submit(c, "x [[submitstallx1:0.3]]")
    assert time.monotonic() - start >= 0.3 and r.status_code == 200
    start = time.monotonic()
    assert submit(c, "x [[submitstallx1:0.3]]").status_code == 200
    assert time.monotonic() - start < 0.3


def test_drop_breaks_the_answer_after_creating_the_task() -> None:
    c = client()
    # In process the break shows as a truncated body (over a socket, httpx raises RemoteProtocolError).
    with pytest.raises(ValueError):
        submit(c, "x [[submitdrop]]").json()
    rows = records(c, "submitdrop")
    assert len(rows) == 1 and rows[0]["task_id"]


def test_retry_after_zero_negative_and_past_are_sent_as_written() -> None:
    c = client()
    assert submit(c, "a [[429x1:ra=0]]").headers["retry-after"] == "0"
    assert submit(c, "b [[429x1:ra=-5]]").headers["retry-after"] == "-5"
    past = email.utils.parsedate_to_datetime(submit(c, "c [[429x1:pastdate]]").headers["retry-after"])
    assert past.timestamp() < time.time() - 30
    oa = c.post(
        "/openai/v1/images/generations", json={"model": "gpt-image-2", "prompt": "d [[429x1:pastdate]]"}, headers=AUTH
    )
    assert oa.status_code == 429 and "retry-after-ms" not in oa.headers


def test_poll_404_once_then_the_task() -> None:
    c = client()
    task_id = submit(c, "x [[poll404x1]] [[instant]]").json()["data"]["task_id"]
    first = c.get(f"/api/generate/status/{task_id}", headers=AUTH)
    assert first.status_code == 404 and first.json()["error"]["type"] == "not_found"
    assert c.get(f"/api/generate/status/{task_id}", headers=AUTH).json()["data"]["status"] == "finished"


@pytest.mark.parametrize(("label", "outcome"), [("completed", ""), ("success", ""), ("canceled", "[[statusfail]]")])
def test_terminal_label(label: str, outcome: str) -> None:
    c = client()
    task_id = submit(c, f"x [[label:{label}]] {outcome} [[instant]]").json()["data"]["task_id"]
    data = c.get(f"/api/generate/status/{task_id}", headers=AUTH).json()["data"]
    assert data["status"] == label
    assert bool(data["files"]) is (outcome == "")


def test_label_does_not_touch_running_tasks() -> None:
    c = client()
    task_id = submit(c, "x [[label:completed]] [[never]]").json()["data"]["task_id"]
    assert c.get(f"/api/generate/status/{task_id}", headers=AUTH).json()["data"]["status"] != "completed"


def test_idempotency_key_is_recorded() -> None:
    c = client()
    submit(c, "x [[instant]] key")
    i2_submit(c, "y [[instant]] key")
    assert [r["idempotency_key"] for r in records(c, "key")] == ["job-1", "job-1"]
    c.post(
        "/api/generate/submit",
        json={"model": "gpt-image-2", "input": {"prompt": "z nokey"}},
        headers={"Authorization": "Bearer k"},
    )
    assert "idempotency_key" not in records(c, "nokey")[0]
