"""The webhook route with the real core (``imagegen.webhooks.inbound``): a valid token drives a forced poll, and
no body, header or token, however hostile, gets a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col

from config.settings import Settings
from imagegen.api import create_app
from imagegen.constants import POLL_TASK
from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus
from imagegen.webhooks.inbound import callback_token
from tests.support.api import UNREACHABLE_REDIS
from tests.support.recorder import RecordingPublisher

TASK_ID = "task-123"


@pytest.fixture(scope="module", params=["", "s3cret"], ids=["unsigned", "signed"])
def real(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, RecordingPublisher, str, str]]:
    """An app on the real core, and one running job: ``(client, publisher, job id, its callback token)``.

    With ``APIDOT_WEBHOOK_SECRET`` set, deliveries must also carry a valid signature.
    """
    db: Path = tmp_path_factory.mktemp("webhooks") / "t.db"
    settings = Settings(
        database_url=f"sqlite:///{db}",
        redis_url=UNREACHABLE_REDIS,
        imagegen_api_tokens="",
        apidot_webhook_secret=request.param,
    )
    rt = Runtime.create(settings)
    job, _ = create_job(rt, ImageRequest(prompt="a cat"))
    with rt.session() as s:  # as if a worker had submitted it
        s.execute(
            sa.update(Job).where(col(Job.id) == job.id).values(status=JobStatus.RUNNING.value, upstream_task_id=TASK_ID)
        )
    publisher = RecordingPublisher()
    client = TestClient(create_app(runtime=rt, publisher=publisher))
    yield client, publisher, job.id, callback_token(settings.callback_token_key, job.id)
    rt.close()


def _signed(task_id: str) -> dict[str, str]:
    """Valid signature headers for ``task_id`` (the unsigned app ignores them)."""
    now = str(int(time.time()))
    digest = hmac.new(b"s3cret", f"{task_id}.{now}".encode(), hashlib.sha256).digest()
    return {"X-Webhook-Timestamp": now, "X-Webhook-Signature": base64.b64encode(digest).decode()}


def test_valid_token_schedules_a_forced_poll(real: tuple[TestClient, RecordingPublisher, str, str]) -> None:
    client, publisher, job_id, token = real
    publisher.steps.clear()
    body = b'{"code": 200, "data": {"task_id": "task-123", "status": "finished"}}'
    response = client.post(f"/webhooks/apidot?token={quote(token)}", content=body, headers=_signed(TASK_ID))
    assert response.status_code == 202 and response.json() == {"ok": True}
    assert [(s.task, s.job_id, s.force) for s in publisher.steps] == [(POLL_TASK, job_id, True)]


def test_forged_token_and_unknown_task(real: tuple[TestClient, RecordingPublisher, str, str]) -> None:
    client, publisher, job_id, token = real
    publisher.steps.clear()
    forged = f"{job_id}.AAAA"
    assert client.post(f"/webhooks/apidot?token={forged}", content=b'{"task_id": "task-123"}').status_code == 401
    other_task = b'{"data": {"task_id": "someone-else"}}'
    response = client.post(
        f"/webhooks/apidot?token={quote(token)}", content=other_task, headers=_signed("someone-else")
    )
    assert response.status_code == 404
    assert client.post(f"/webhooks/openai?token={quote(token)}", content=b'{"task_id": "x"}').status_code == 404
    assert publisher.steps == []


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | st.sampled_from([TASK_ID, "", "x" * 201]).map(lambda t: json.dumps({"data": {"task_id": t}}).encode()),
    provider=st.sampled_from(["apidot", "openai", "image2", "x", "%C3%A9", "a" * 300]),
    use_token=st.booleans(),
    header=st.text(max_size=40),
)
def test_no_delivery_gets_a_5xx(
    real: tuple[TestClient, RecordingPublisher, str, str], body: bytes, provider: str, use_token: bool, header: str
) -> None:
    client, _, _, token = real
    query = f"?token={quote(token)}" if use_token else ""
    headers = {"X-Webhook-Timestamp": header.encode("utf-8"), "X-Webhook-Signature": header.encode("utf-8")}
    response = client.post(f"/webhooks/{provider}{query}", content=body, headers=headers)
    assert response.status_code in (202, 400, 401, 404), response.text
