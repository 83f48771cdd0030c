"""Fixtures for the HTTP API: a real SQLite database, a recording publisher, and a fake webhook core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from imagegen.api import create_app
from imagegen.runtime import Runtime
from tests.support.api import UNREACHABLE_REDIS, ClientFactory, FakeWebhookCore
from tests.support.recorder import RecordingPublisher


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
