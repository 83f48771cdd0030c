"""Happy paths, timing guarantees, deadlines, pauses and idempotency through the real pipeline."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagegen.ops import actions as admin
from imagegen.store import repo
from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline


@pytest.mark.parametrize("variant", ["", "[[shapeb]]", "[[code0]]", "[[processing]] [[slow:1.5]]"])
def test_happy_path_status_shapes(stack: Stack, variant: str) -> None:
    prompt = stack.prompt(f"happy {variant}")
    job = stack.wait(stack.submit(prompt, quality="low", size="3:2"))
    assert job.status == "succeeded", job.error_message
    assert job.result and job.result[0]["url"].endswith(f"/files/{job.upstream_task_id}.png")
    assert job.result[0]["path"].endswith(".png") and job.result[0]["sha256"]
    assert job.error_kind is None and job.finished_at is not None
    assert stack.submits(prompt) == 1 and job.submit_attempts == 1
    assert job.polls == stack.polls(prompt) >= 1


def test_retry_after_seconds_is_respected(stack: Stack) -> None:
    prompt = stack.prompt("wait 2s please [[429x1:ra=2]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert job.status == "succeeded"
    first, second = stack.records(prompt, "submit")
    assert second["time"] - first["time"] >= 2.0


def test_retry_after_http_date_is_respected(stack: Stack) -> None:
    prompt = stack.prompt("wait until a date [[429x1:date]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert job.status == "succeeded"
    first, second = stack.records(prompt, "submit")
    # The date is ceil(now)+2 at the simulator: the retry may not come before it.
    assert second["time"] >= int(first["time"]) + 2


def test_concurrent_submits_with_one_idempotency_key(stack: Stack) -> None:
    prompt = stack.prompt("idempotent [[instant]]")
    key = f"key-{uuid.uuid4()}"
    argv = [sys.executable, "-m", "imagegen.cli.main", "submit", "--prompt", prompt, "--idempotency-key", key]
    with ThreadPoolExecutor(6) as pool:
        outs = list(
            pool.map(
                lambda _: subprocess.run(
                    argv, env=stack.env, capture_output=True, text=True, check=True
                ).stdout.strip(),
                range(6),
            )
        )
    assert len(set(outs)) == 1
    job = stack.wait(outs[0])
    assert job.status == "succeeded"
    time.sleep(1)
    assert stack.submits(prompt) == 1


def test_validation_errors_never_reach_the_upstream(stack: Stack) -> None:
    prompt = stack.prompt("invalid size")
    argv = [sys.executable, "-m", "imagegen.cli.main", "submit", "--prompt", prompt, "--size", "banana"]
    done = subprocess.run(argv, env=stack.env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "size" in done.stderr and "Traceback" not in done.stderr
    with stack.rt.session() as s:
        assert not [j for j in repo.list_jobs(s, limit=50) if j.request.get("prompt") == prompt]
    time.sleep(0.5)
    assert stack.records(prompt) == []


def test_paused_provider_sends_nothing_and_resume_releases(stack: Stack, resume_after: None) -> None:
    blocker = stack.prompt("out of credits [[402]]")
    blocked = stack.wait(stack.submit(blocker))
    assert blocked.status == "held"
    waiting = [stack.prompt(f"waits while paused {i} [[instant]]") for i in range(3)]
    ids = [stack.submit(p) for p in waiting]
    time.sleep(3)  # three reconciler runs
    assert [stack.job(i).status for i in ids] == ["queued"] * 3
    assert all(stack.records(p) == [] for p in waiting), "a paused provider must see nothing"
    assert stack.submits(blocker) == 1
    admin.cancel(stack.rt, blocked.id)
    stack.resume()
    assert [stack.wait(i).status for i in ids] == ["succeeded"] * 3


def test_queued_job_passes_its_deadline(stack: Stack, resume_after: None) -> None:
    blocker = stack.wait(stack.submit(stack.prompt("pause it [[402]]")))
    assert blocker.status == "held"
    prompt = stack.prompt("queued behind a pause")
    job = stack.wait(stack.submit(prompt, deadline_s=2), statuses={"expired"}, timeout=20)
    assert (job.status, job.error_kind) == ("expired", "deadline_exceeded")
    assert stack.records(prompt) == []


def test_held_job_passes_its_deadline_keeping_its_kind(stack: Stack, resume_after: None) -> None:
    job_id = stack.submit(stack.prompt("held then expired [[402]]"), deadline_s=3)
    assert stack.wait(job_id).status == "held"
    job = stack.wait(job_id, statuses={"expired"}, timeout=20)
    assert (job.status, job.error_kind) == ("expired", "insufficient_credits")


def test_retry_makes_a_new_submit_and_keeps_the_old_task_in_the_log(stack: Stack) -> None:
    prompt = stack.prompt("fails once [[statusfail]] [[instant]]")
    job_id = stack.submit(prompt)
    first = stack.wait(job_id)
    assert first.status == "failed"
    result = admin.retry(stack.rt, job_id)
    assert result.ok
    for step in result.steps:
        stack.publisher.publish(step)
    again = stack.wait(job_id, statuses={"succeeded", "failed"}, timeout=30)
    # Still fails (the directive is on the prompt), but through a second upstream task.
    assert again.upstream_task_id != first.upstream_task_id
    assert stack.submits(prompt) == 2
    with stack.rt.session() as s:
        tasks = {a.upstream_task_id for a in repo.list_attempts(s, job_id) if a.kind == "submit"}
    assert {first.upstream_task_id, again.upstream_task_id} <= tasks


def test_enqueue_by_task_name_with_own_job_id(stack: Stack) -> None:
    job_id = str(uuid.uuid4())
    prompt = stack.prompt("sent by name [[instant]]")
    stack.publisher._app.send_task("imagegen.enqueue", kwargs={"request": {"prompt": prompt}, "job_id": job_id})
    job = None
    deadline = time.monotonic() + 20
    while job is None and time.monotonic() < deadline:
        with stack.rt.session() as s:
            job = repo.get_job(s, job_id)
        time.sleep(0.1)
    assert job is not None
    assert stack.wait(job_id).status == "succeeded"


def test_invalid_request_by_task_name_is_rejected_and_worker_lives(stack: Stack) -> None:
    job_id = str(uuid.uuid4())
    stack.publisher._app.send_task("imagegen.enqueue", kwargs={"request": {"prompt": "", "n": 3}, "job_id": job_id})
    stack.publisher._app.send_task("imagegen.submit", args=["not-a-uuid"])
    stack.publisher._app.send_task("imagegen.poll", args=[str(uuid.uuid4())])
    time.sleep(1.5)
    with stack.rt.session() as s:
        rejected = repo.get_job(s, job_id)
    # Recorded under the sender's id, so it can read why (every problem listed).
    assert rejected is not None and (rejected.status, rejected.error_kind) == ("failed", "invalid_request")
    assert "n: unknown field" in (rejected.error_message or "")
    # The worker still serves work.
    assert stack.wait(stack.submit(stack.prompt("still alive [[instant]]"))).status == "succeeded"


def test_a_reused_key_for_another_request_by_task_name_is_a_logged_rejection(stack: Stack) -> None:
    key = f"by-name-{uuid.uuid4().hex[:8]}"
    first = stack.prompt("first by name [[instant]]")
    stack.publisher._app.send_task("imagegen.enqueue", kwargs={"request": {"prompt": first, "idempotency_key": key}})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with stack.rt.session() as s:
            if (job := repo.get_job_by_idempotency_key(s, key)) is not None:
                break
        time.sleep(0.1)
    assert job is not None and stack.wait(job.id).status == "succeeded"
    other_id = str(uuid.uuid4())
    request = {"prompt": stack.prompt("another picture"), "idempotency_key": key}
    stack.publisher._app.send_task("imagegen.enqueue", kwargs={"request": request, "job_id": other_id})
    after = stack.submit(stack.prompt("after the conflict [[instant]]"))
    assert stack.wait(after).status == "succeeded"  # the worker lives on
    log = (stack.log_dir / "worker.log").read_text()
    deadline = time.monotonic() + 10
    expected = f"idempotency_key: '{key}' was already used for a different request"
    while expected not in log and time.monotonic() < deadline:
        time.sleep(0.2)
        log = (stack.log_dir / "worker.log").read_text()
    assert "imagegen.enqueue rejected" in log and expected in log
    # Like any rejected by-name enqueue with a job id: recorded under that id, so the sender can read why.
    with stack.rt.session() as s:
        rejected = repo.get_job(s, other_id)
    assert rejected is not None and (rejected.status, rejected.error_kind) == ("failed", "invalid_request")
    assert expected in (rejected.error_message or "")
    assert stack.submits(first) == 1
