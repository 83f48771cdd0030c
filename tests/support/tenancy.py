"""Tenant isolation checks shared by the API tier (TestClient) and the pipeline tier (a real ``imagegen api``).

Both clients are httpx-style (``client.request(method, url, json=..., headers=...)``), so one table of
routes and one assertion serve both. To cover a new per-job or per-batch route, add it to
``JOB_ROUTES`` or ``BATCH_ROUTES``: every isolation test then checks it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: The tokens of the isolation tests: tenants a and b, and one admin.
TENANT_TOKENS = "a:tok-a,b:tok-b"
ADMIN_TOKEN = "adm"


def auth(token: str) -> dict[str, str]:
    """The Authorization header of a bearer token."""
    return {"Authorization": f"Bearer {token}"}


class HttpClient(Protocol):
    """What the checks need of a client: TestClient and httpx.Client both have it."""

    def request(self, method: str, url: str, *, json: Any = None, headers: Mapping[str, str] | None = None) -> Any: ...


@dataclass(frozen=True)
class Route:
    """One route that names a job or a batch by id (``{id}`` in ``path``)."""

    method: str
    path: str
    body: Any = None

    def call(self, client: HttpClient, ident: str, token: str) -> Any:
        return client.request(self.method, self.path.format(id=ident), json=self.body, headers=auth(token))


#: Every route that names one job (the image download too: another tenant's job is "job not found",
#: before any question of whether the image is stored).
JOB_ROUTES: list[Route] = [
    Route("GET", "/v1/jobs/{id}"),
    Route("POST", "/v1/jobs/{id}/cancel"),
    Route("POST", "/v1/jobs/{id}/retry"),
    Route("GET", "/v1/jobs/{id}/images/0"),
    Route("GET", "/v1/jobs/{id}/events"),
]
#: Every route that names one batch.
BATCH_ROUTES: list[Route] = [
    Route("GET", "/v1/batches/{id}"),
    Route("POST", "/v1/batches/{id}/cancel"),
]

UNKNOWN_ID = "00000000-0000-4000-8000-00000000dead"


def assert_other_tenant_gets_404(
    client: HttpClient, token: str, *, job_id: str | None = None, batch_id: str | None = None
) -> None:
    """Every route naming ``job_id``/``batch_id`` answers ``token`` exactly as for an id that does not exist."""
    checks = [(r, job_id) for r in JOB_ROUTES if job_id] + [(r, batch_id) for r in BATCH_ROUTES if batch_id]
    for route, ident in checks:
        assert ident is not None
        theirs = route.call(client, ident, token)
        unknown = route.call(client, UNKNOWN_ID, token)
        assert theirs.status_code == 404, (route, theirs.status_code, theirs.text)
        assert theirs.json() == unknown.json(), route


def listed_ids(client: HttpClient, token: str, query: str = "") -> list[str]:
    """The ids ``GET /v1/jobs`` gives ``token``, following ``next`` to the end."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        sep = "&" if query else ""
        url = f"/v1/jobs?{query}{sep}limit=500" + (f"&cursor={cursor}" if cursor else "")
        page = client.request("GET", url, headers=auth(token))
        assert page.status_code == 200, page.text
        ids += [j["id"] for j in page.json()["jobs"]]
        cursor = page.json()["next"]
        if cursor is None:
            return ids
