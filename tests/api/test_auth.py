"""Bearer-token auth (``IMAGEGEN_API_TOKENS``): only the intake routes are guarded."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from imagegen.api.auth import token_matches
from tests.support.api import GOOD_TOKEN, ClientFactory


@pytest.fixture
def guarded(make_client: ClientFactory) -> TestClient:
    return make_client(imagegen_api_tokens="t1, t2")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer t1x", "Basic dDE6dDE=", "t1", "Bearer ", "Bearer tö"])
def test_missing_or_wrong_token_is_401(guarded: TestClient, header: str | None) -> None:
    # Non-ASCII values go out as latin-1 bytes, as a raw HTTP client could send them.
    headers = {"Authorization": header.encode("latin-1")} if header is not None else {}
    for method, path, body in (
        ("POST", "/v1/jobs", {"prompt": "a cat"}),
        ("GET", "/v1/jobs/00000000-0000-4000-8000-000000000000", None),
        ("POST", "/v1/batches", {"requests": [{"prompt": "a"}]}),
        ("GET", "/v1/batches/00000000-0000-4000-8000-000000000000", None),
    ):
        response = guarded.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "missing or invalid bearer token"}


def test_invalid_bodies_are_401_before_422(guarded: TestClient) -> None:
    # Without a token, nothing about the request is looked at.
    assert guarded.post("/v1/jobs", content=b"{").status_code == 401


@pytest.mark.parametrize("token", ["t1", "t2"])
def test_either_token_is_accepted(guarded: TestClient, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    created = guarded.post("/v1/jobs", json={"prompt": "a cat"}, headers=auth)
    assert created.status_code == 202
    assert guarded.get(f"/v1/jobs/{created.json()['id']}", headers=auth).status_code == 200
    batch = guarded.post("/v1/batches", json={"requests": [{"prompt": "a"}]}, headers=auth)
    assert batch.status_code == 202
    assert guarded.get(f"/v1/batches/{batch.json()['batch_id']}", headers=auth).status_code == 200


def test_probes_metrics_and_webhooks_need_no_token(guarded: TestClient) -> None:
    assert guarded.get("/healthz").status_code == 503  # the broker is unreachable, but no 401
    assert guarded.get("/metrics").status_code == 200
    assert guarded.post(f"/webhooks/apidot?token={GOOD_TOKEN}", content=b"{}").status_code == 202
    assert guarded.get("/openapi.json").status_code == 200


def test_openapi_declares_the_bearer_scheme_when_auth_is_on(guarded: TestClient, client: TestClient) -> None:
    schema = guarded.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the tokens in IMAGEGEN_API_TOKENS.",
    }
    assert schema["paths"]["/v1/jobs"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    # Without tokens the intake is open, and the schema says so.
    assert "security" not in client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]


def test_token_matches() -> None:
    tokens = frozenset({"t1", "t2"})
    assert token_matches("t1", tokens) and token_matches("t2", tokens)
    assert not token_matches("t3", tokens) and not token_matches("", tokens) and not token_matches("é", tokens)
