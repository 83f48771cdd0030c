"""``POST /webhooks/{provider}``: the route hands raw bytes and headers to the core, publishes its step."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from imagegen.constants import POLL_TASK
from tests.support.api import FAKE_JOB_ID, GOOD_TOKEN, ClientFactory, FakeWebhookCore
from tests.support.recorder import RecordingPublisher


def test_accepted_delivery_publishes_the_forced_poll(
    client: TestClient, publisher: RecordingPublisher, webhook_core: FakeWebhookCore
) -> None:
    body = b'{"code": 200, "data": {"task_id": "t-1", "status": "finished"}}'
    headers = {"X-Webhook-Timestamp": "1700000000", "X-Webhook-Signature": "c2ln", "Content-Type": "application/json"}
    response = client.post(f"/webhooks/apidot?token={GOOD_TOKEN}", content=body, headers=headers)
    assert response.status_code == 202
    assert response.json() == {"ok": True}
    assert [(s.task, s.job_id, s.force) for s in publisher.steps] == [(POLL_TASK, FAKE_JOB_ID, True)]
    call = webhook_core.calls[0]
    assert call["provider"] == "apidot" and call["token"] == GOOD_TOKEN and call["body"] == body
    assert call["headers"]["x-webhook-signature"] == "c2ln"


def test_duplicate_delivery_is_accepted_and_publishes_nothing(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    response = client.post(f"/webhooks/apidot?token={GOOD_TOKEN}", content=b'{"task_id": "dup"}')
    assert response.status_code == 202
    assert publisher.steps == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/webhooks/apidot", 401),
        ("/webhooks/apidot?token=forged", 401),
        (f"/webhooks/nosuch?token={GOOD_TOKEN}", 404),
    ],
)
def test_rejected_delivery_answers_the_core_status(
    client: TestClient, publisher: RecordingPublisher, path: str, status: int
) -> None:
    response = client.post(path, content=b'{"task_id": "t-1"}')
    assert response.status_code == status
    assert isinstance(response.json()["detail"], str)
    assert publisher.steps == []


def test_a_broker_outage_still_acknowledges(make_client: ClientFactory, publisher: RecordingPublisher) -> None:
    def broken(step: object) -> None:
        raise ConnectionError("broker down")

    publisher.publish = broken  # type: ignore[method-assign]
    response = make_client().post(f"/webhooks/apidot?token={GOOD_TOKEN}", content=b"{}")
    assert response.status_code == 202


def test_the_real_core_rejects_a_forged_token(runtime, publisher: RecordingPublisher) -> None:
    from imagegen.api import create_app

    client = TestClient(create_app(runtime=runtime, publisher=publisher))
    response = client.post("/webhooks/apidot?token=forged", content=b'{"data": {"task_id": "t"}}')
    assert response.status_code == 401
    assert client.post("/webhooks/nosuch?token=x", content=b"{}").status_code == 404
    assert publisher.steps == []


def test_a_bad_token_is_refused_before_the_body_is_read(client: TestClient, webhook_core: FakeWebhookCore) -> None:
    consumed = 0

    def body() -> object:
        nonlocal consumed
        for _ in range(1000):  # 64 MiB if anyone read it all
            consumed += 1
            yield b"x" * 65536

    response = client.post("/webhooks/apidot?token=forged", content=body())
    assert response.status_code == 401
    assert webhook_core.token_checks == 1 and webhook_core.calls == []  # the core never saw a body
    assert consumed <= 2, f"{consumed} chunks were read"
    unknown = client.post(f"/webhooks/acme?token={GOOD_TOKEN}", content=b"{}")
    assert unknown.status_code == 404 and webhook_core.calls == []
