"""``/healthz`` (database + broker) and ``/metrics`` (Prometheus, computed from the database)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from imagegen import devstack
from imagegen.runtime import Runtime
from imagegen.store import repo
from tests.support.api import ClientFactory


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private Redis for this module."""
    proc, url = devstack.start_redis()
    try:
        yield url
    finally:
        proc.stop()


def test_healthz_is_503_when_the_broker_is_unreachable(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"ok": False, "database": "ok", "broker": "unreachable"}


def test_healthz_is_200_with_a_real_redis(make_client: ClientFactory, redis_url: str) -> None:
    response = make_client(redis_url=redis_url).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "database": "ok", "broker": "ok"}


def test_healthz_reports_a_database_outage(make_client: ClientFactory, runtime: Runtime, redis_url: str) -> None:
    import sqlalchemy as sa

    runtime.engine.dispose()
    runtime.engine = sa.create_engine("sqlite:////proc/imagegen-nowhere/t.db")
    response = make_client(redis_url=redis_url).get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"ok": False, "database": "unavailable", "broker": "ok"}


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_metrics_count_jobs_by_status_and_error_kind(client: TestClient, runtime: Runtime) -> None:
    for i in range(3):
        assert client.post("/v1/jobs", json={"prompt": f"cat {i}"}).status_code == 202
    with runtime.session() as s:
        repo.pause_provider(s, provider="openai", reason="insufficient_credits", message="402")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert re.search(r'^imagegen_jobs\{error_kind="",status="queued"\} 3\.0$', response.text, re.M)
    jobs = _samples(response.text, "imagegen_jobs")
    assert jobs[(("error_kind", ""), ("status", "queued"))] == 3
    assert jobs[(("error_kind", ""), ("status", "succeeded"))] == 0
    paused = _samples(response.text, "imagegen_providers_paused")
    assert paused[(("provider", "apidot"),)] == 0
    assert _samples(response.text, "imagegen_database_up") == {(): 1}


def test_metrics_survive_a_database_outage(client: TestClient, runtime: Runtime) -> None:
    import sqlalchemy as sa

    from imagegen.store.db import make_sessionmaker

    runtime.engine.dispose()
    runtime.engine = sa.create_engine("sqlite:////proc/imagegen-nowhere/t.db")
    runtime.sessions = make_sessionmaker(runtime.engine)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert _samples(response.text, "imagegen_database_up") == {(): 0}


def test_each_app_has_its_own_registry(make_client: ClientFactory) -> None:
    # Building many apps in one process must not clash on a global registry.
    first, second = make_client(), make_client()
    assert first.get("/metrics").text == second.get("/metrics").text
