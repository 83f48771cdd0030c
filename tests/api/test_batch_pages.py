"""``GET /v1/batches/{id}``: counts over the whole batch, its jobs one page at a time."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_a_batch_pages_its_jobs_and_counts_them_all(client: TestClient) -> None:
    batch = client.post("/v1/batches", json={"requests": [{"prompt": str(i)} for i in range(60)]}).json()
    client.post(f"/v1/jobs/{batch['jobs'][0]}/cancel")
    first = client.get(f"/v1/batches/{batch['batch_id']}?limit=50").json()
    assert set(first) == {"batch_id", "counts", "callback_url", "notify_status", "finished_at", "jobs", "next"}
    assert first["counts"] == {"queued": 59, "canceled": 1} and len(first["jobs"]) == 50 and first["next"]
    seen = [j["id"] for j in first["jobs"]]
    cursor = first["next"]
    while cursor:
        page = client.get(f"/v1/batches/{batch['batch_id']}?limit=7&cursor={cursor}").json()
        assert page["counts"] == first["counts"] and len(page["jobs"]) <= 7
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next"]
    assert sorted(seen) == sorted(batch["jobs"]) and len(seen) == 60
    small = client.get(f"/v1/batches/{batch['batch_id']}?limit=500").json()
    assert len(small["jobs"]) == 60 and small["next"] is None
    # Without a limit the page is the whole batch, as the route answered before it had pages.
    whole = client.get(f"/v1/batches/{batch['batch_id']}").json()
    assert len(whole["jobs"]) == 60 and whole["next"] is None


def test_bad_page_parameters_are_422(client: TestClient) -> None:
    batch = client.post("/v1/batches", json={"requests": [{"prompt": "a"}]}).json()
    for query, loc in (("limit=0", "limit"), ("limit=10001", "limit"), ("cursor=%%%", "cursor")):
        response = client.get(f"/v1/batches/{batch['batch_id']}?{query}")
        assert response.status_code == 422
        assert [p["loc"] for p in response.json()["detail"]] == [["query", loc]]
