"""``POST /v1/batches`` with a ``callback_url``: validated like a job's (422 naming it, nothing written),
shown by ``GET /v1/batches/{id}`` to its own tenant and admins only; other tenants still get a 404."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from imagegen.runtime import Runtime
from imagegen.store.models import Batch
from tests.support.api import ClientFactory, count_jobs
from tests.support.recorder import RecordingPublisher
from tests.support.tenancy import ADMIN_TOKEN, TENANT_TOKENS, assert_other_tenant_gets_404, auth

HOOK = "https://hooks.example/batches"


def _batches(runtime: Runtime) -> int:
    with runtime.session() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(Batch)) or 0)


def test_a_batch_with_a_callback_shows_it_and_its_notification_state(client: TestClient) -> None:
    created = client.post("/v1/batches", json={"requests": [{"prompt": "a"}], "callback_url": HOOK})
    assert created.status_code == 202, created.text
    assert set(created.json()) == {"batch_id", "jobs"}
    shown = client.get(f"/v1/batches/{created.json()['batch_id']}").json()
    assert (shown["callback_url"], shown["notify_status"], shown["finished_at"]) == (HOOK, None, None)
    plain = client.post("/v1/batches", json={"requests": [{"prompt": "b"}], "callback_url": None}).json()
    assert client.get(f"/v1/batches/{plain['batch_id']}").json()["callback_url"] is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example/b", "callback_url: must be an https URL"),
        ("http://hooks.example/b", "callback_url: must be an https URL"),
        ("", "callback_url: must be an https URL"),
        ("https://", "callback_url: is not a valid URL"),
        ("https://h.example/" + "a" * 3000, "callback_url: must be at most 2048 characters"),
        ("https://a\u0000b.example/", "callback_url: must not contain NUL characters"),
        (7, "callback_url: must be a string"),
        ({"url": HOOK}, "callback_url: must be a string"),
    ],
)
def test_a_bad_callback_url_is_422_naming_it_and_writes_nothing(
    client: TestClient, publisher: RecordingPublisher, runtime: Runtime, url: object, message: str
) -> None:
    response = client.post("/v1/batches", json={"requests": [{"prompt": "a"}], "callback_url": url})
    assert response.status_code == 422
    assert [(p["loc"], p["msg"]) for p in response.json()["detail"]] == [(["body", "callback_url"], message)]
    assert count_jobs(runtime) == 0 and _batches(runtime) == 0 and publisher.steps == []


def test_a_bad_callback_url_and_bad_items_are_listed_together(client: TestClient, runtime: Runtime) -> None:
    body = {"requests": [{"prompt": "a", "size": "huge"}], "callback_url": "ftp://x.example/"}
    locs = [p["loc"] for p in client.post("/v1/batches", json=body).json()["detail"]]
    assert ["body", "callback_url"] in locs and ["body", "requests", 0, "size"] in locs
    assert count_jobs(runtime) == 0 and _batches(runtime) == 0


def test_a_batch_of_existing_jobs_only_leaves_no_batch_row(client: TestClient, runtime: Runtime) -> None:
    client.post("/v1/jobs", json={"prompt": "a", "idempotency_key": "k"})
    again = client.post(
        "/v1/batches", json={"requests": [{"prompt": "a", "idempotency_key": "k"}], "callback_url": HOOK}
    )
    assert again.status_code == 202
    assert _batches(runtime) == 0, "nothing of its own to finish: no batch.finished will ever be owed"
    mixed = client.post(
        "/v1/batches",
        json={"requests": [{"prompt": "a", "idempotency_key": "k"}, {"prompt": "new"}], "callback_url": HOOK},
    ).json()
    assert client.get(f"/v1/batches/{mixed['batch_id']}").json()["callback_url"] == HOOK


def test_tenant_isolation_is_unchanged_and_the_callback_is_its_tenants(make_client: ClientFactory) -> None:
    tenants = make_client(imagegen_api_tokens=TENANT_TOKENS, imagegen_admin_tokens=ADMIN_TOKEN)
    body = {"requests": [{"prompt": "a"}, {"prompt": "b"}], "callback_url": HOOK}
    created = tenants.post("/v1/batches", json=body, headers=auth("tok-a")).json()
    assert_other_tenant_gets_404(tenants, "tok-b", batch_id=created["batch_id"])
    assert tenants.get(f"/v1/batches/{created['batch_id']}", headers=auth("tok-a")).json()["callback_url"] == HOOK
    assert tenants.get(f"/v1/batches/{created['batch_id']}", headers=auth(ADMIN_TOKEN)).json()["callback_url"] == HOOK
    # An admin's batch for two tenants: each tenant sees its own jobs, never the admin's callback.
    mixed = {"requests": [{"prompt": "a", "tenant": "a"}, {"prompt": "b", "tenant": "b"}], "callback_url": HOOK}
    theirs = tenants.post("/v1/batches", json=mixed, headers=auth(ADMIN_TOKEN)).json()
    seen = tenants.get(f"/v1/batches/{theirs['batch_id']}", headers=auth("tok-a")).json()
    assert seen["counts"] == {"queued": 1} and seen["callback_url"] is None
    assert tenants.get(f"/v1/batches/{theirs['batch_id']}", headers=auth(ADMIN_TOKEN)).json()["callback_url"] == HOOK
