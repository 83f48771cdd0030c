"""Batches as a unit, end to end: ``POST /v1/batches`` with a ``callback_url`` on a real ``imagegen api``, a
prefork worker, beat, Redis and the simulator; the caller hears ``batch.finished`` once per outcome."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from imagegen.webhooks import batches as batch_notices
from tests.support.receiver import Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline

CALLER_SECRET = "whsec_" + base64.b64encode(b"batch-caller-secret-0123456789ab").decode()


@pytest.fixture(scope="module")
def batch_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tests.support.stack import stack_of_its_own

    with stack_of_its_own(
        database_factory(), tmp_path_factory, with_api=True, IMAGEGEN_WEBHOOK_SECRET=CALLER_SECRET
    ) as stack:
        yield stack


def _post_batch(stack: Stack, prompts: list[str], callback_url: str) -> dict[str, Any]:
    body = {"requests": [{"prompt": p} for p in prompts], "callback_url": callback_url}
    response = httpx.post(f"{stack.api_url}/v1/batches", json=body, timeout=10)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def _get_batch(stack: Stack, batch_id: str) -> dict[str, Any]:
    response = httpx.get(f"{stack.api_url}/v1/batches/{batch_id}", timeout=10)
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def _wait_ended(stack: Stack, job_ids: list[str]) -> None:
    for job_id in job_ids:
        stack.wait(job_id, timeout=60)


def _mixed(stack: Stack, tag: str) -> list[str]:
    """Five prompts: three succeed at once, two fail upstream (the simulator's scripted fault)."""
    ok = [stack.prompt(f"{tag} ok {i} [[instant]]") for i in range(3)]
    bad = [stack.prompt(f"{tag} bad {i} [[statusfail]]") for i in range(2)]
    return ok + bad


def test_a_batch_gets_one_signed_batch_finished_after_its_last_job(batch_stack: Stack) -> None:
    receiver = Receiver()
    created = _post_batch(batch_stack, _mixed(batch_stack, "unit"), receiver.url)
    _wait_ended(batch_stack, created["jobs"])
    (headers, body), *more = receiver.wait_for(1)
    time.sleep(3)  # several reconciler runs (1 s apart) and every job's follow-up have had their chance
    assert len(receiver.calls) == 1, [json.loads(b) for _, b in receiver.calls]
    assert not more
    Webhook(CALLER_SECRET).verify(body, headers)  # the receiver's side, with the reference implementation
    assert abs(time.time() - int(headers["webhook-timestamp"])) < 60
    assert headers["webhook-id"].startswith("msg_batch_")
    payload = json.loads(body)
    assert payload["type"] == "batch.finished" and payload["batch_id"] == created["batch_id"]
    assert payload["counts"] == {"succeeded": 3, "failed": 2}
    assert payload["tenant"] == "default" and payload["finished_at"]
    shown = _get_batch(batch_stack, created["batch_id"])
    assert shown["callback_url"] == receiver.url and shown["notify_status"] == "delivered"
    assert shown["counts"] == {"succeeded": 3, "failed": 2}
    log = batch_notices.deliveries(batch_stack.rt, created["batch_id"])
    assert [(d.attempt, d.http_status, d.job_id) for d in log] == [(1, 204, None)]


def test_a_receiver_failing_twice_is_retried_then_served_once(batch_stack: Stack) -> None:
    receiver = Receiver(fail_first=2)
    prompts = [batch_stack.prompt(f"retried {i} [[instant]]") for i in range(2)]
    created = _post_batch(batch_stack, prompts, receiver.url)
    _wait_ended(batch_stack, created["jobs"])
    deadline = time.monotonic() + 30
    while _get_batch(batch_stack, created["batch_id"])["notify_status"] != "delivered":
        assert time.monotonic() < deadline, receiver.calls
        time.sleep(0.2)
    log = batch_notices.deliveries(batch_stack.rt, created["batch_id"])
    assert [d.http_status for d in log] == [500, 500, 204]
    assert len(receiver.calls) == 3
    assert len({h["webhook-id"] for h, _ in receiver.calls}) == 1, "one message id across delivery retries"
    for headers, body in receiver.calls:
        Webhook(CALLER_SECRET).verify(body, headers)
        assert json.loads(body)["counts"] == {"succeeded": 2}


def test_a_retried_job_finishing_the_batch_again_is_a_new_notification(batch_stack: Stack) -> None:
    receiver = Receiver()
    prompts = [batch_stack.prompt("again ok [[instant]]"), batch_stack.prompt("again bad [[statusfail]]")]
    created = _post_batch(batch_stack, prompts, receiver.url)
    _wait_ended(batch_stack, created["jobs"])
    assert len(receiver.wait_for(1)) == 1
    failed = created["jobs"][1]
    response = httpx.post(f"{batch_stack.api_url}/v1/jobs/{failed}/retry", timeout=10)
    assert response.status_code == 200, response.text
    batch_stack.wait(failed, timeout=60)
    calls = receiver.wait_for(2)
    time.sleep(2)
    assert len(receiver.calls) == 2, "the batch's second outcome was never sent, or sent twice"
    ids = [h["webhook-id"] for h, _ in calls]
    assert ids[0] != ids[1], "the new outcome reuses the old webhook-id (a receiver drops it as a duplicate)"
    for headers, body in calls:
        Webhook(CALLER_SECRET).verify(body, headers)
        assert json.loads(body)["counts"] == {"succeeded": 1, "failed": 1}
