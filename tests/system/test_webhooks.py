"""Webhook mode end to end: simulator → ``imagegen api`` → forced poll → caller notification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from config.settings import Settings
from imagegen.ops import actions as admin
from imagegen.webhooks import outbound as notifications
from imagegen.webhooks.inbound import callback_token
from tests.support.receiver import Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline

APIDOT_SECRET = "apidot-webhook-secret"
CALLER_SECRET = "whsec_" + base64.b64encode(b"caller-secret-bytes-0123456789ab").decode()
#: The token key every process derives from the same settings (here: the APIDot webhook secret).
KEY = Settings(apidot_webhook_secret=APIDOT_SECRET).callback_token_key
WEBHOOK_ENV = {
    "APIDOT_WEBHOOK_SECRET": APIDOT_SECRET,
    "IMAGEGEN_WEBHOOK_SECRET": CALLER_SECRET,
    "IMAGEGEN_EXPECTED_DURATION_S": "3",
    "IMAGEGEN_WEBHOOK_POLL_FACTOR": "2",  # the safety-net poll comes after 6 s
    "SIM_DURATION_S": "0.5",
    "SIM_WEBHOOK_RETRY_BASE_S": "0.2",
}


@pytest.fixture(scope="module")
def webhook_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from imagegen import devstack
    from tests.support.stack import start_stack

    redis_proc, redis_url = devstack.start_redis()
    stack = start_stack(redis_url, database_factory(), tmp_path_factory, with_api=True, **WEBHOOK_ENV)
    yield stack
    stack.close()
    redis_proc.stop()


def _verify_standard_webhook(headers: dict[str, str], body: bytes) -> None:
    # The receiver's side, with the reference implementation (raises WebhookVerificationError).
    Webhook(CALLER_SECRET).verify(body, headers)
    assert abs(time.time() - int(headers["webhook-timestamp"])) < 60


def test_webhook_completes_the_job_with_at_most_one_poll(webhook_stack: Stack) -> None:
    receiver = Receiver()
    prompt = webhook_stack.prompt("by webhook")
    job = webhook_stack.wait(webhook_stack.submit(prompt, callback_url=receiver.url), timeout=20)
    assert job.status == "succeeded"
    finished_after = (job.finished_at - job.submitted_at).total_seconds()  # type: ignore[operator]
    assert finished_after < 5, "finished by the webhook, long before the 6 s safety poll"
    assert job.polls <= 1 and webhook_stack.polls(prompt) <= 1
    webhooks = webhook_stack.records(prompt, "webhook")
    assert webhooks and webhooks[0]["status_code"] == 202
    deadline = time.monotonic() + 10
    while not receiver.calls and time.monotonic() < deadline:
        time.sleep(0.1)
    ((headers, body),) = receiver.calls
    _verify_standard_webhook(headers, body)
    payload = json.loads(body)
    assert payload["type"] == "job.finished" and payload["id"] == job.id and payload["status"] == "succeeded"


def test_duplicate_deliveries_one_transition_one_notification(webhook_stack: Stack) -> None:
    receiver = Receiver()
    prompt = webhook_stack.prompt("three times [[dupwebhook:3]]")
    job = webhook_stack.wait(webhook_stack.submit(prompt, callback_url=receiver.url), timeout=20)
    assert job.status == "succeeded"
    time.sleep(2)  # all duplicates delivered and handled
    assert len(webhook_stack.records(prompt, "webhook")) == 3
    again = webhook_stack.job(job.id)
    assert again.finished_at == job.finished_at and len(again.result or []) == 1
    assert len(receiver.calls) == 1
    assert [d.http_status for d in notifications.deliveries(webhook_stack.rt, job.id)] == [204]


def test_no_webhook_falls_back_to_the_safety_poll(webhook_stack: Stack) -> None:
    prompt = webhook_stack.prompt("silent provider [[nowebhook]]")
    job = webhook_stack.wait(webhook_stack.submit(prompt), timeout=30)
    assert job.status == "succeeded" and job.polls >= 1


def test_caller_notification_is_retried(webhook_stack: Stack) -> None:
    receiver = Receiver(fail_first=2)
    job = webhook_stack.wait(webhook_stack.submit(webhook_stack.prompt("[[statusfail]]"), callback_url=receiver.url))
    assert job.status == "failed"
    deadline = time.monotonic() + 30
    while webhook_stack.job(job.id).notify_status != "delivered" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [d.http_status for d in notifications.deliveries(webhook_stack.rt, job.id)] == [500, 500, 204]
    assert len({h["webhook-id"] for h, _ in receiver.calls}) == 1, "one message id across retries"
    assert json.loads(receiver.calls[-1][1])["error"]["kind"] == "generation_failed"


def test_a_retried_job_notifies_its_new_outcome_under_a_new_id(webhook_stack: Stack) -> None:
    receiver = Receiver()
    job = webhook_stack.wait(webhook_stack.submit(webhook_stack.prompt("[[statusfail]]"), callback_url=receiver.url))
    deadline = time.monotonic() + 30
    while webhook_stack.job(job.id).notify_status != "delivered" and time.monotonic() < deadline:
        time.sleep(0.2)
    result = admin.retry(webhook_stack.rt, job.id)
    assert result.ok
    for step in result.steps:
        webhook_stack.publisher.publish(step)
    assert webhook_stack.wait(job.id, timeout=30).status == "failed"
    deadline = time.monotonic() + 30
    while len(receiver.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(receiver.calls) == 2, "the retried job's new outcome was never sent to the caller"
    ids = [h["webhook-id"] for h, _ in receiver.calls]
    assert ids[0] != ids[1], "the new outcome reuses the old webhook-id (a receiver drops it as a duplicate)"
    for headers, body in receiver.calls:
        _verify_standard_webhook(headers, body)


def _post(stack: Stack, token: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{stack.api_url}/webhooks/apidot", params={"token": token}, json=body, headers=headers, timeout=10
    )


def _signed(task_id: str, ts: int | None = None, secret: str = APIDOT_SECRET) -> dict[str, str]:
    stamp = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{task_id}.{stamp}".encode(), hashlib.sha256).digest()
    return {"X-Webhook-Timestamp": str(stamp), "X-Webhook-Signature": base64.b64encode(mac).decode()}


def test_forged_stale_and_unknown_webhooks_are_rejected(webhook_stack: Stack) -> None:
    prompt = webhook_stack.prompt("[[never]] [[nowebhook]]")
    job = webhook_stack.wait(webhook_stack.submit(prompt), statuses={"running"})
    task_id = job.upstream_task_id or ""
    token = callback_token(KEY, job.id)
    body = {"code": 200, "data": {"task_id": task_id, "status": "finished"}}
    polls = webhook_stack.polls(prompt)
    assert _post(webhook_stack, token, body, _signed(task_id, secret="forged")).status_code == 401
    assert _post(webhook_stack, token, body, _signed(task_id, ts=int(time.time()) - 301)).status_code == 401
    assert _post(webhook_stack, token + "x", body, _signed(task_id)).status_code == 401
    assert _post(webhook_stack, token, body, {}).status_code == 401
    other = callback_token(KEY, str(uuid.uuid4()))
    assert _post(webhook_stack, other, body, _signed(task_id)).status_code == 404
    wrong_task = {"data": {"task_id": "task-unknown"}}
    assert _post(webhook_stack, token, wrong_task, _signed("task-unknown")).status_code == 404
    time.sleep(1)
    after = webhook_stack.job(job.id)
    assert after.status == "running" and webhook_stack.polls(prompt) == polls, "no state change"
    # A genuine one is accepted, and only forces a poll (the body is not trusted: still running).
    before = webhook_stack.polls(prompt)
    assert _post(webhook_stack, token, body, _signed(task_id)).status_code == 202
    time.sleep(1.5)
    assert webhook_stack.job(job.id).status == "running" and webhook_stack.polls(prompt) >= before + 1


def test_a_provider_without_callbacks_is_polled_on_the_plain_schedule(webhook_stack: Stack) -> None:
    """image2 is given no callback URL, so its polls must not be stretched by the webhook factor."""
    prompt = webhook_stack.prompt("image2 no webhook [[slow:30]]")
    job_id = webhook_stack.submit(prompt, provider="image2", model="gpt-image-2", size="1024x1024")
    job = webhook_stack.wait(job_id, timeout=30, statuses={"running"})
    assert job.submitted_at is not None and job.next_attempt_at is not None
    first_poll = (job.next_attempt_at - job.submitted_at).total_seconds()
    admin.cancel(webhook_stack.rt, job_id)
    print(f"\n[image2 in webhook mode] first poll {first_poll:.2f}s after the submit (expected 3 s x 0.8)")
    assert first_poll == pytest.approx(2.4, abs=0.3), "image2's first poll was stretched as if it had a webhook"
    # And the callback-taking provider keeps its stretch (factor 2): 3 s x 0.8 x 2.
    prompt = webhook_stack.prompt("apidot webhook [[slow:30]] [[nowebhook]]")
    job_id = webhook_stack.submit(prompt)
    job = webhook_stack.wait(job_id, timeout=30, statuses={"running"})
    assert job.submitted_at is not None and job.next_attempt_at is not None
    stretched = (job.next_attempt_at - job.submitted_at).total_seconds()
    admin.cancel(webhook_stack.rt, job_id)
    assert stretched == pytest.approx(4.8, abs=0.3)
