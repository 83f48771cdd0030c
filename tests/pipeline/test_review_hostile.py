"""Adversarial review: hostile by-name messages and headers against a real worker and API.

Each case must leave the worker's main process alive and serving, and no job it creates may break
rendering (API, CLI) afterwards.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imagegen import devstack
from tests.support.hostile import kombu_envelope, push_raw, still_serving, wait_row, worker_log
from tests.support.stack import Stack, revive_worker, stack_of_its_own

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def own_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_of_its_own(database_factory(), tmp_path_factory, with_api=True) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _live_worker(own_stack: Stack) -> None:
    revive_worker(own_stack)


def _with_headers(envelope: dict[str, Any], **headers: Any) -> str:
    return json.dumps({**envelope, "headers": {**envelope["headers"], **headers}})


@pytest.mark.parametrize(
    "headers",
    [
        {"eta": "not a date"},
        {"eta": "9999-12-31T23:59:59+00:00"},
        {"eta": 12345},
        {"eta": ["x"]},
        {"expires": "not a date"},
        {"expires": 1e300},
        {"expires": ["x"]},
        {"retries": "many"},
        {"retries": 1e300},
        {"id": {"a": 1}},
        {"id": None},
        {"task": None},
        {"task": "imagegen.nope"},
        {"root_id": ["x"], "parent_id": {"y": 1}, "group": [1]},
        {"argsrepr": {"a": 1}, "kwargsrepr": 5},
        {"origin": ["x"]},
        {"stamped_headers": 5},
        {"ignore_result": "yes"},
        {"shadow": ["x"]},
        {"lang": None},
    ],
    ids=lambda h: "-".join(f"{k}={str(v)[:12]}" for k, v in h.items()),
)
def test_absurd_headers_do_not_crash_the_worker(own_stack: Stack, headers: dict[str, Any]) -> None:
    stack = own_stack
    assert stack.worker is not None
    main_pid = stack.worker.pid
    envelope = kombu_envelope(stack, "imagegen.submit")
    push_raw(stack, _with_headers(envelope, **headers))
    time.sleep(1)
    still_serving(stack, main_pid)


@pytest.mark.parametrize(
    "body",
    [
        "\xff\xfe not utf-8",
        '[["' + "9" * 5000 + '"], {}, {}]',
        "[[" + "9" * 5000 + "], {}, {}]",
        "[[NaN], {}, {}]",
        '[[], {"job_id": Infinity}, {}]',
        '[[], {}, {"callbacks": 5, "errbacks": {"a": 1}, "chain": "x", "chord": 1}]',
        '[[], {}, {"chain": [{"task": "imagegen.reconcile"}]}]',
        '[[], {}, {"chain": [{"task": "imagegen.reconcile", "args": [], "kwargs": {}, "options": {}}]}]',
    ],
)
def test_odd_bodies_do_not_crash_the_worker(own_stack: Stack, body: str) -> None:
    stack = own_stack
    assert stack.worker is not None
    main_pid = stack.worker.pid
    before = len(worker_log(stack))
    envelope = kombu_envelope(stack, "imagegen.poll")
    raw = body.encode("latin-1") if body.startswith("\xff") else body.encode()
    payload = json.dumps({**envelope, "body": base64.b64encode(raw).decode()})
    push_raw(stack, payload)
    time.sleep(1)
    still_serving(stack, main_pid)
    assert "Traceback" not in worker_log(stack)[before:]


def test_unknown_task_name_does_not_crash_the_worker(own_stack: Stack) -> None:
    stack = own_stack
    assert stack.worker is not None
    main_pid = stack.worker.pid
    stack.publisher._app.send_task("imagegen.nope", args=[1], queue="celery")
    stack.publisher._app.send_task("celery.chord_unlock", args=[1], queue="celery")
    stack.publisher._app.send_task("celery.backend_cleanup", queue="celery")
    still_serving(stack, main_pid)


@pytest.mark.parametrize(
    "request_",
    [
        {"prompt": "lone \ud800 surrogate"},
        {"prompt": "fine", "metadata": {"k": "\udcff"}},
        {"prompt": "fine", "metadata": {"\ud800": 1}},
        {"prompt": "fine", "idempotency_key": "\ud800"},
    ],
)
def test_enqueued_requests_always_render(own_stack: Stack, request_: dict[str, Any]) -> None:
    """Whatever a by-name sender puts in a request, the job it creates (if any) renders everywhere."""
    stack = own_stack
    assert stack.worker is not None and stack.api_url is not None
    main_pid = stack.worker.pid
    before = len(worker_log(stack))
    job_id = str(uuid.uuid4())
    stack.publisher._app.send_task("imagegen.enqueue", kwargs={"request": request_, "job_id": job_id}, queue="celery")
    job = wait_row(stack, job_id)
    assert job is not None
    time.sleep(1)
    one = httpx.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10)
    assert one.status_code == 200, one.text[:300]
    assert (job.status, job.error_kind) == ("failed", "invalid_request")
    assert "must be valid UTF-8 text" in (job.error_message or "")
    for argv in (["status", job_id, "--json"], ["jobs", "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "imagegen.cli.main", *argv], env=stack.env, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr[-300:]
        json.loads(done.stdout)
    still_serving(stack, main_pid)
    assert "Traceback" not in worker_log(stack)[before:]


def test_discarded_messages_never_log_their_prompt(own_stack: Stack) -> None:
    """Celery logs the first KiB of a discarded message's body and all its headers (a plain sender's
    ``argsrepr`` holds the whole request): a misspelled task name put prompts and URLs in the worker log."""
    stack = own_stack
    assert stack.worker is not None
    main_pid = stack.worker.pid
    before = len(worker_log(stack))
    secret = f"PRIVATE-PROMPT-{uuid.uuid4().hex}"
    url = f"https://private.example/{uuid.uuid4().hex}.png"
    request = {"prompt": secret, "image_urls": [url], "model": "gpt-image-2-edit"}
    send = stack.publisher._app.send_task
    send("imagegen.enqueue_v2", kwargs={"request": request}, argsrepr=repr(request), queue="celery")
    envelope = kombu_envelope(stack, "imagegen.enqueue")
    body = json.dumps([[], {"request": request}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    invalid = {**envelope, "body": base64.b64encode(body.encode()).decode()}
    push_raw(stack, _with_headers(invalid, timelimit=["soon", 1], kwargsrepr=repr(request)))
    push_raw(stack, json.dumps({**invalid, "content-type": "application/x-unknown"}))
    devstack.wait_until(
        lambda: worker_log(stack)[before:].count("discarded") >= 3, timeout=30, what="rejections logged"
    )
    still_serving(stack, main_pid)
    log = worker_log(stack)[before:]
    assert "imagegen.enqueue_v2" in log  # the rejection itself is logged, by task name
    assert secret not in log and url not in log
