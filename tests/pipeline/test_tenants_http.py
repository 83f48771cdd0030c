"""Tenant isolation through a real ``imagegen api`` process, worker and simulator, on every per-job route.

``IMAGEGEN_API_TOKENS="a:tok-a,b:tok-b"`` and ``IMAGEGEN_ADMIN_TOKENS="adm"``: tenant b gets the 404 of
an unknown id for each of tenant a's jobs and batches (read, list, cancel, retry, batch read, batch
cancel), and nothing it tried happened; the admin token sees everything; resume needs the admin token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, revive_worker, tenant_api_stack
from tests.support.tenancy import ADMIN_TOKEN, assert_other_tenant_gets_404, auth, listed_ids

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def own_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with tenant_api_stack(database_factory(), tmp_path_factory) as stack:
        yield stack


@pytest.fixture
def api(own_stack: Stack) -> Iterator[httpx.Client]:
    revive_worker(own_stack)
    assert own_stack.api_url is not None
    with httpx.Client(base_url=own_stack.api_url, timeout=15) as client:
        yield client


def _post(api: httpx.Client, token: str, path: str, body: Any) -> dict[str, Any]:
    response = api.post(path, json=body, headers=auth(token))
    assert response.status_code in (200, 202), response.text
    out: dict[str, Any] = response.json()
    return out


def _wait(api: httpx.Client, token: str, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=auth(token)).json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def test_every_route_hides_one_tenants_jobs_from_another(own_stack: Stack, api: httpx.Client) -> None:
    job = _post(api, "tok-a", "/v1/jobs", {"prompt": own_stack.prompt("a's [[never]]")})
    batch = _post(api, "tok-a", "/v1/batches", {"requests": [{"prompt": own_stack.prompt("a's batch [[never]]")}] * 2})
    theirs = _post(api, "tok-b", "/v1/jobs", {"prompt": own_stack.prompt("b's [[never]]")})
    assert job["tenant"] == "a" and theirs["tenant"] == "b"
    _wait(api, "tok-a", job["id"], {"running"})  # the real worker submitted it upstream

    assert_other_tenant_gets_404(api, "tok-b", job_id=job["id"], batch_id=batch["batch_id"])
    assert not {job["id"], *batch["jobs"]} & set(listed_ids(api, "tok-b"))
    assert api.get("/v1/jobs?tenant=a", headers=auth("tok-b")).json() == {"jobs": [], "next": None}
    # Nothing b tried happened: the job still runs, the batch is still whole.
    assert api.get(f"/v1/jobs/{job['id']}", headers=auth("tok-a")).json()["status"] == "running"
    assert sum(api.get(f"/v1/batches/{batch['batch_id']}", headers=auth("tok-a")).json()["counts"].values()) == 2

    # The admin sees every tenant, and may narrow to one.
    everything = set(listed_ids(api, ADMIN_TOKEN))
    assert {job["id"], theirs["id"], *batch["jobs"]} <= everything
    assert theirs["id"] in listed_ids(api, ADMIN_TOKEN, "tenant=b")
    assert job["id"] not in listed_ids(api, ADMIN_TOKEN, "tenant=b")
    assert set(listed_ids(api, "tok-a")) == {job["id"], *batch["jobs"]}

    # The owner acts: cancel, retry (the worker submits it again), batch cancel.
    canceled = api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth("tok-a"))
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth("tok-a")).status_code == 409
    assert api.post(f"/v1/jobs/{job['id']}/retry", headers=auth("tok-b")).status_code == 404
    assert api.post(f"/v1/jobs/{job['id']}/retry", headers=auth("tok-a")).status_code == 200
    _wait(api, "tok-a", job["id"], {"running"})
    done = api.post(f"/v1/batches/{batch['batch_id']}/cancel", headers=auth("tok-a")).json()
    assert done["canceled"] == 2 and done["counts"] == {"canceled": 2}
    # The admin may act on any tenant's jobs.
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth(ADMIN_TOKEN)).status_code == 200
    assert api.post(f"/v1/jobs/{theirs['id']}/cancel", headers=auth(ADMIN_TOKEN)).status_code == 200


def test_a_tenants_job_runs_to_the_end_and_keeps_its_tenant(own_stack: Stack, api: httpx.Client) -> None:
    job = _post(api, "tok-b", "/v1/jobs", {"prompt": own_stack.prompt("b's fox [[instant]]"), "idempotency_key": "k"})
    same_key = _post(
        api, "tok-a", "/v1/jobs", {"prompt": own_stack.prompt("a's own [[instant]]"), "idempotency_key": "k"}
    )
    assert same_key["id"] != job["id"]  # keys are per tenant
    ended = _wait(api, "tok-b", job["id"], {"succeeded", "failed"})
    assert ended["status"] == "succeeded" and ended["tenant"] == "b"
    # Its stored image downloads for b and the admin; for a it is the 404 of an unknown job.
    for token in ("tok-b", ADMIN_TOKEN):
        image = api.get(f"/v1/jobs/{job['id']}/images/0", headers=auth(token))
        assert image.status_code == 200 and image.content, (token, image.status_code)
    assert_other_tenant_gets_404(api, "tok-a", job_id=job["id"])


def test_resume_needs_the_admin_token(own_stack: Stack, api: httpx.Client) -> None:
    job = _post(api, "tok-a", "/v1/jobs", {"prompt": own_stack.prompt("pays [[402]]")})
    held = _wait(api, "tok-a", job["id"], {"held", "failed"})
    assert held["status"] == "held"
    assert api.post("/v1/providers/apidot/resume").status_code == 401
    assert api.post("/v1/providers/apidot/resume", headers=auth("tok-a")).status_code == 403
    resumed = api.post("/v1/providers/apidot/resume", headers=auth(ADMIN_TOKEN))
    assert resumed.status_code == 200 and resumed.json()["message"].startswith("apidot unpaused")
    # The job goes back to work (and, its account still empty, is held again): stop it.
    api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth("tok-a"))
    own_stack.resume("apidot")
