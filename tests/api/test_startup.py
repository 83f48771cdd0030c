"""App construction: lazy resources at startup, a clear failure for a schema that is behind."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from imagegen.api import create_app
from imagegen.errors import SchemaBehind
from imagegen.runtime import Runtime
from tests.support.api import UNREACHABLE_REDIS
from tests.support.recorder import RecordingPublisher


def test_startup_builds_the_runtime_and_closes_it(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/fresh.db", redis_url=UNREACHABLE_REDIS)
    publisher = RecordingPublisher()
    app = create_app(settings=settings, publisher=publisher)
    with TestClient(app) as client:
        # Runtime.create brought the new SQLite file's schema up to date before the first request.
        assert client.post("/v1/jobs", json={"prompt": "a cat"}).status_code == 202
        assert app.state.api._runtime is not None
    assert app.state.api._runtime is None
    assert len(publisher.steps) == 1


def test_a_schema_behind_stops_startup_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def behind(*args: object, **kwargs: object) -> Runtime:
        raise SchemaBehind("the database schema is at '0001', this code needs '0002': run `imagegen db upgrade`")

    monkeypatch.setattr(Runtime, "create", behind)
    app = create_app(settings=Settings(database_url=f"sqlite:///{tmp_path}/x.db"), publisher=RecordingPublisher())
    with caplog.at_level(logging.ERROR), pytest.raises(SchemaBehind), TestClient(app):
        pass
    assert "run `imagegen db upgrade`" in caplog.text


def test_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/batches", "/v1/batches/{batch_id}", "/healthz", "/metrics"} <= set(
        schema["paths"]
    )
    assert "/webhooks/{provider}" in schema["paths"]
    components = schema["components"]["schemas"]
    assert components["JobRequest"]["required"] == ["prompt"]
    assert components["BatchRequest"]["properties"]["requests"]["items"] == {"$ref": "#/components/schemas/JobRequest"}
    assert "image_urls" in components["JobRequest"]["properties"]
