"""The pure parts of batch notifications: the webhook id per outcome, the body, the callback URL rules,
the message and its route, and what a by-name sender's garbage for ``imagegen.notify_batch`` becomes."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from config.celery import celery_config
from config.limits import TIME_LIMITS
from config.settings import Settings
from imagegen.byname import by_name
from imagegen.constants import NOTIFY_BATCH_TASK, NOTIFY_QUEUE
from imagegen.errors import RequestInvalid
from imagegen.messages import notify_batch_step
from imagegen.request import ImageRequest, callback_url_problem, check_callback_url
from imagegen.store.models import Batch, Job
from imagegen.webhooks import batches
from imagegen.webhooks.outbound import headers_for
from imagegen.webhooks.outbound import message_id as job_message_id

FINISHED = datetime(2027, 2, 1, 12, 0, 0, 123456, tzinfo=UTC)
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _batch(finished_at: datetime | None = FINISHED) -> Batch:
    return Batch(id=str(uuid.uuid4()), tenant="t1", callback_url="https://hooks.example/b", finished_at=finished_at)


def test_one_webhook_id_per_outcome() -> None:
    batch = _batch()
    assert batches.message_id(batch) == batches.message_id(batch.model_copy())  # every delivery retry
    later = batch.model_copy(update={"finished_at": FINISHED + timedelta(microseconds=1)})
    assert batches.message_id(later) != batches.message_id(batch)  # finished again after a retry
    assert batches.message_id(batch).startswith(f"msg_batch_{batch.id}_")
    job = Job(
        id=batch.id,
        provider="apidot",
        model="m",
        request={},
        status="failed",
        finished_at=FINISHED,
        deadline_at=FINISHED,
    )
    assert job_message_id(job) != batches.message_id(batch), "never mistaken for a job's notification"


def test_the_body_names_the_batch_and_counts_by_status() -> None:
    batch = _batch()
    body = batches.payload(batch, {"succeeded": 3, "failed": 2})
    assert body == {
        "type": "batch.finished",
        "batch_id": batch.id,
        "tenant": "t1",
        "counts": {"succeeded": 3, "failed": 2},
        "finished_at": FINISHED.isoformat(),
    }
    raw = json.dumps(body).encode()
    headers = headers_for(SECRET, batches.message_id(batch), raw)
    Webhook(SECRET).verify(raw, headers)  # signed like a job's notification


@pytest.mark.parametrize(
    ("value", "private", "problem"),
    [
        ("https://hooks.example/b", False, None),
        ("http://127.0.0.1:9/b", True, None),
        ("http://hooks.example/b", False, "must be an https URL"),
        ("ftp://hooks.example/b", True, "must be an http(s) URL"),
        ("https://", False, "is not a valid URL"),
        ("https://a b.example/", False, "is not a valid URL"),
        ("https://a\x00b.example/", False, "must not contain NUL characters"),
        ("https://\ud800.example/", False, "must be valid UTF-8 text"),
        ("https://h.example/" + "a" * 3000, False, "must be at most 2048 characters"),
        (7, False, "must be a string"),
        (["https://hooks.example/b"], False, "must be a string"),
    ],
)
def test_a_batch_callback_url_follows_the_rules_of_a_jobs(value: object, private: bool, problem: str | None) -> None:
    assert callback_url_problem(value, allow_private_urls=private) == problem
    if isinstance(value, str) and "\x00" not in value and "\ud800" not in value:
        try:
            ImageRequest(prompt="p", callback_url=value, allow_private_urls=private)
        except RequestInvalid as exc:
            assert [e.message for e in exc.errors if e.field == "callback_url"] == [problem]
        else:
            assert problem is None


def test_check_callback_url_names_the_field() -> None:
    check_callback_url(None, allow_private_urls=False)
    with pytest.raises(RequestInvalid) as caught:
        check_callback_url("ftp://x.example/", allow_private_urls=False)
    assert [(e.field, e.message) for e in caught.value.errors] == [("callback_url", "must be an https URL")]


def test_the_message_goes_to_the_notify_queue_with_the_notify_limits() -> None:
    step = notify_batch_step("b-1", 2.5)
    assert (step.task, step.job_id, step.queue, step.countdown) == ("imagegen.notify_batch", "b-1", NOTIFY_QUEUE, 2.5)
    assert celery_config(Settings())["task_routes"][NOTIFY_BATCH_TASK] == {"queue": NOTIFY_QUEUE}
    assert TIME_LIMITS[NOTIFY_BATCH_TASK] == TIME_LIMITS["imagegen.notify"]


def test_garbage_sent_by_name_is_a_logged_rejection(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def notify_batch(batch_id: str) -> None:
        seen.append(batch_id)

    task = by_name(notify_batch)
    good = str(uuid.uuid4())
    caplog.set_level(logging.WARNING)
    for args, kwargs in [
        ((), {}),
        (("not-an-id",), {}),
        (({"batch_id": good},), {}),
        ((good, 1), {}),
        ((), {"batch": good}),
        ((good,), {"batch_id": good}),
        ((), {"batch_id": 12}),
    ]:
        assert task(*args, **kwargs) is None
    assert seen == []
    assert "imagegen.notify_batch rejected: batch_id: must be a UUID string" in caplog.text
    assert "Traceback" not in caplog.text
    task(good)
    task(batch_id=good)
    assert seen == [good, good]
