"""Fixtures for the HTTP API: a real SQLite database, a recording publisher, and a fake webhook core."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from config.settings import Settings
from imagegen.api import create_app
from imagegen.errors import WebhookRejected
from imagegen.messages import Step, poll_step
from imagegen.runtime import Runtime
from imagegen.store.models import Job
from imagegen.webhooks.inbound import WebhookAccepted

#: Nothing listens on port 1: the broker is unreachable unless a test starts a Redis.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
GOOD_TOKEN = "good-token"
FAKE_JOB_ID = "00000000-0000-4000-8000-000000000001"


class RecordingPublisher:
    """A ``Publisher`` that keeps the steps instead of sending them."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def publish(self, step: Step) -> None:
        self.steps.append(step)


class FakeWebhookCore:
    """Follows the contract of ``imagegen.webhooks.inbound.receive_upstream_webhook`` without a job behind it.

    ``apidot`` is the only known provider; ``?token=good-token`` is the only valid token; a body
    ``{"task_id": "dup"}`` is a duplicate delivery (accepted, nothing to publish).
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.token_checks = 0

    def check_token(self, rt: Runtime, provider: str, token: str | None) -> str:
        """The pre-body check: the same provider and token rules, before any byte of the body is read."""
        self.token_checks += 1
        if provider != "apidot":
            raise WebhookRejected(404, f"unknown provider {provider!r}")
        if token != GOOD_TOKEN:
            raise WebhookRejected(401, "invalid callback token")
        return FAKE_JOB_ID

    def __call__(
        self, rt: Runtime, provider: str, *, token: str | None, headers: Mapping[str, str], body: bytes
    ) -> WebhookAccepted:
        self.calls.append({"provider": provider, "token": token, "headers": dict(headers), "body": body})
        if provider != "apidot":
            raise WebhookRejected(404, f"unknown provider {provider!r}")
        if token != GOOD_TOKEN:
            raise WebhookRejected(401, "invalid callback token")
        if body == b'{"task_id": "dup"}':
            return WebhookAccepted(FAKE_JOB_ID, None)
        return WebhookAccepted(FAKE_JOB_ID, poll_step(FAKE_JOB_ID, force=True))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own SQLite file, no broker, no auth."""
    return Settings(database_url=f"sqlite:///{tmp_path}/t.db", redis_url=UNREACHABLE_REDIS, imagegen_api_tokens="")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.create(settings)
    yield rt
    rt.close()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def webhook_core() -> FakeWebhookCore:
    return FakeWebhookCore()


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(runtime: Runtime, publisher: RecordingPublisher, webhook_core: FakeWebhookCore) -> ClientFactory:
    """``make_client(**settings_overrides)``: a client of an app on the test's runtime and recorder."""

    def make(**overrides: Any) -> TestClient:
        settings = runtime.settings.model_copy(update=overrides)
        app = create_app(runtime=runtime, publisher=publisher, settings=settings, webhook_receiver=webhook_core)
        return TestClient(app)

    return make


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


def count_jobs(rt: Runtime) -> int:
    """Rows in the jobs table (to prove a rejected request wrote nothing)."""
    with rt.session() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(Job)) or 0)
