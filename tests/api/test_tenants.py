"""Tenants on the intake routes: a token sees and acts on its own tenant's jobs only; admins on all."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support.api import ClientFactory
from tests.support.tenancy import ADMIN_TOKEN, TENANT_TOKENS, auth

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def tenants(make_client: ClientFactory) -> TestClient:
    return make_client(imagegen_api_tokens=TENANT_TOKENS, imagegen_admin_tokens=ADMIN_TOKEN)


def _job(client: TestClient, token: str, **fields: object) -> dict[str, object]:
    response = client.post("/v1/jobs", json={"prompt": "a cat", **fields}, headers=auth(token))
    assert response.status_code in (200, 202), response.text
    body: dict[str, object] = response.json()
    return body


def test_a_job_belongs_to_its_tokens_tenant_and_is_404_to_others(tenants: TestClient) -> None:
    job = _job(tenants, "tok-a")
    assert job["tenant"] == "a"
    assert tenants.get(f"/v1/jobs/{job['id']}", headers=auth("tok-a")).json()["tenant"] == "a"
    other = tenants.get(f"/v1/jobs/{job['id']}", headers=auth("tok-b"))
    unknown = tenants.get(f"/v1/jobs/{MISSING}", headers=auth("tok-b"))
    # Exactly the answer of an unknown id: nothing tells b that the id exists.
    assert (
        (other.status_code, other.json()) == (unknown.status_code, unknown.json()) == (404, {"detail": "job not found"})
    )
    assert tenants.get(f"/v1/jobs/{job['id']}", headers=auth(ADMIN_TOKEN)).status_code == 200


def test_a_body_tenant_other_than_the_tokens_is_422_naming_tenant(tenants: TestClient) -> None:
    response = tenants.post("/v1/jobs", json={"prompt": "a", "tenant": "b"}, headers=auth("tok-a"))
    assert response.status_code == 422
    assert [p["loc"] for p in response.json()["detail"]] == [["body", "tenant"]]
    assert _job(tenants, "tok-a", tenant="a")["tenant"] == "a"  # naming one's own tenant is fine
    assert _job(tenants, ADMIN_TOKEN, tenant="b")["tenant"] == "b"  # an admin names any
    assert _job(tenants, ADMIN_TOKEN)["tenant"] == "default"


@pytest.mark.parametrize("tenant", ["", "a b", "x" * 65, "a/b", "ä", 7])
def test_an_invalid_tenant_is_422_naming_tenant(tenants: TestClient, tenant: object) -> None:
    response = tenants.post("/v1/jobs", json={"prompt": "a", "tenant": tenant}, headers=auth(ADMIN_TOKEN))
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert [p["loc"] for p in problems] == [["body", "tenant"]] and problems[0]["msg"].startswith("tenant: ")


def test_idempotency_keys_are_per_tenant(tenants: TestClient) -> None:
    first = _job(tenants, "tok-a", idempotency_key="order-1")
    # b reusing a's key gets a job of its own, not a's (nor a conflict that would tell b the key is used).
    theirs = tenants.post("/v1/jobs", json={"prompt": "other", "idempotency_key": "order-1"}, headers=auth("tok-b"))
    assert theirs.status_code == 202 and theirs.json()["id"] != first["id"] and theirs.json()["tenant"] == "b"
    again = tenants.post("/v1/jobs", json={"prompt": "a cat", "idempotency_key": "order-1"}, headers=auth("tok-a"))
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    conflict = tenants.post("/v1/jobs", json={"prompt": "x", "idempotency_key": "order-1"}, headers=auth("tok-a"))
    assert conflict.status_code == 409


def test_batches_belong_to_their_tenant(tenants: TestClient) -> None:
    created = tenants.post("/v1/batches", json={"requests": [{"prompt": "a"}, {"prompt": "b"}]}, headers=auth("tok-a"))
    assert created.status_code == 202
    batch_id = created.json()["batch_id"]
    mine = tenants.get(f"/v1/batches/{batch_id}", headers=auth("tok-a")).json()
    assert mine["counts"] == {"queued": 2} and {j["tenant"] for j in mine["jobs"]} == {"a"}
    other = tenants.get(f"/v1/batches/{batch_id}", headers=auth("tok-b"))
    assert (other.status_code, other.json()) == (404, {"detail": "batch not found"})
    assert tenants.get(f"/v1/batches/{batch_id}", headers=auth(ADMIN_TOKEN)).status_code == 200


def test_a_batch_item_naming_another_tenant_is_422_and_writes_nothing(tenants: TestClient) -> None:
    body = {"requests": [{"prompt": "a"}, {"prompt": "b", "tenant": "b"}]}
    response = tenants.post("/v1/batches", json=body, headers=auth("tok-a"))
    assert response.status_code == 422
    assert [p["loc"] for p in response.json()["detail"]] == [["body", "requests", 1, "tenant"]]


def test_without_tokens_everything_is_tenant_default_and_open(client: TestClient) -> None:
    job = client.post("/v1/jobs", json={"prompt": "a"}).json()
    assert job["tenant"] == "default"
    named = client.post("/v1/jobs", json={"prompt": "a", "tenant": "x"}).json()
    assert named["tenant"] == "x" and client.get(f"/v1/jobs/{named['id']}").status_code == 200
