"""``POST /v1/jobs/{id}/cancel``, ``/retry`` and ``POST /v1/batches/{id}/cancel``, with tenant isolation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from imagegen.constants import SUBMIT_TASK
from tests.support.api import ClientFactory
from tests.support.recorder import RecordingPublisher
from tests.support.tenancy import ADMIN_TOKEN, TENANT_TOKENS, assert_other_tenant_gets_404, auth


@pytest.fixture
def tenants(make_client: ClientFactory) -> TestClient:
    return make_client(imagegen_api_tokens=TENANT_TOKENS, imagegen_admin_tokens=ADMIN_TOKEN)


def test_cancel_then_retry(client: TestClient, publisher: RecordingPublisher) -> None:
    job = client.post("/v1/jobs", json={"prompt": "a"}).json()
    canceled = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled" and canceled.json()["error"]["kind"] == "canceled"
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and "only a job that has not ended can be canceled" in again.json()["detail"]
    publisher.steps.clear()
    retried = client.post(f"/v1/jobs/{job['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued" and retried.json()["error"] is None
    assert [(s.task, s.job_id) for s in publisher.steps] == [(SUBMIT_TASK, job["id"])]
    refused = client.post(f"/v1/jobs/{job['id']}/retry")
    assert refused.status_code == 409 and "can be retried" in refused.json()["detail"]


@pytest.mark.parametrize("job_id", ["00000000-0000-4000-8000-000000000000", "nope"])
def test_actions_on_unknown_jobs_are_404(client: TestClient, job_id: str) -> None:
    for action in ("cancel", "retry"):
        response = client.post(f"/v1/jobs/{job_id}/{action}")
        assert (response.status_code, response.json()) == (404, {"detail": "job not found"})


def test_batch_cancel_cancels_the_active_jobs_and_counts(client: TestClient) -> None:
    batch = client.post("/v1/batches", json={"requests": [{"prompt": str(i)} for i in range(3)]}).json()
    assert client.post(f"/v1/jobs/{batch['jobs'][0]}/cancel").status_code == 200
    other = client.post("/v1/jobs", json={"prompt": "not in the batch"}).json()
    response = client.post(f"/v1/batches/{batch['batch_id']}/cancel")
    assert response.status_code == 200
    assert response.json() == {"batch_id": batch["batch_id"], "canceled": 2, "counts": {"canceled": 3}}
    assert client.post(f"/v1/batches/{batch['batch_id']}/cancel").json()["canceled"] == 0
    assert client.get(f"/v1/jobs/{other['id']}").json()["status"] == "queued"
    for batch_id in ("00000000-0000-4000-8000-000000000000", "nope"):
        missing = client.post(f"/v1/batches/{batch_id}/cancel")
        assert (missing.status_code, missing.json()) == (404, {"detail": "batch not found"})


def test_another_tenant_can_neither_see_nor_act(tenants: TestClient) -> None:
    job = tenants.post("/v1/jobs", json={"prompt": "a"}, headers=auth("tok-a")).json()
    batch = tenants.post("/v1/batches", json={"requests": [{"prompt": "b"}]}, headers=auth("tok-a")).json()
    assert_other_tenant_gets_404(tenants, "tok-b", job_id=job["id"], batch_id=batch["batch_id"])
    # Nothing b tried happened.
    assert tenants.get(f"/v1/jobs/{job['id']}", headers=auth("tok-a")).json()["status"] == "queued"
    assert tenants.get(f"/v1/batches/{batch['batch_id']}", headers=auth("tok-a")).json()["counts"] == {"queued": 1}
    # The owner and an admin may.
    assert tenants.post(f"/v1/jobs/{job['id']}/cancel", headers=auth("tok-a")).status_code == 200
    assert tenants.post(f"/v1/jobs/{job['id']}/retry", headers=auth(ADMIN_TOKEN)).status_code == 200
    done = tenants.post(f"/v1/batches/{batch['batch_id']}/cancel", headers=auth(ADMIN_TOKEN))
    assert done.status_code == 200 and done.json()["canceled"] == 1


def test_an_admin_named_mixed_batch_is_split_by_tenant(tenants: TestClient) -> None:
    body = {"requests": [{"prompt": "x", "tenant": "a"}, {"prompt": "y", "tenant": "b"}]}
    batch = tenants.post("/v1/batches", json=body, headers=auth(ADMIN_TOKEN)).json()
    canceled = tenants.post(f"/v1/batches/{batch['batch_id']}/cancel", headers=auth("tok-a")).json()
    assert canceled["canceled"] == 1 and canceled["counts"] == {"canceled": 1}
    theirs = tenants.get(f"/v1/batches/{batch['batch_id']}", headers=auth("tok-b")).json()
    assert theirs["counts"] == {"queued": 1} and [j["tenant"] for j in theirs["jobs"]] == ["b"]
