"""``GET /v1/jobs``: filters, tenant scoping, limits and keyset cursors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from imagegen.api.paging import decode_cursor, encode_cursor
from imagegen.ops import actions
from imagegen.runtime import Runtime
from imagegen.store.models import Job
from tests.support.api import ClientFactory
from tests.support.tenancy import ADMIN_TOKEN, TENANT_TOKENS, auth, listed_ids


@pytest.fixture
def tenants(make_client: ClientFactory) -> TestClient:
    return make_client(imagegen_api_tokens=TENANT_TOKENS, imagegen_admin_tokens=ADMIN_TOKEN)


def _post(client: TestClient, token: str, n: int, **fields: object) -> list[str]:
    ids = []
    for i in range(n):
        response = client.post("/v1/jobs", json={"prompt": f"p{i}", **fields}, headers=auth(token))
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def test_each_token_lists_its_own_tenant_and_admins_list_all(tenants: TestClient) -> None:
    a, b = _post(tenants, "tok-a", 3), _post(tenants, "tok-b", 2)
    assert listed_ids(tenants, "tok-a") == a[::-1]  # newest first
    assert listed_ids(tenants, "tok-b") == b[::-1]
    assert set(listed_ids(tenants, ADMIN_TOKEN)) == set(a + b)
    assert listed_ids(tenants, ADMIN_TOKEN, "tenant=b") == b[::-1]
    # A tenant token filtering on another tenant narrows to nothing (never to the other's jobs).
    page = tenants.get("/v1/jobs?tenant=b", headers=auth("tok-a"))
    assert page.status_code == 200 and page.json() == {"jobs": [], "next": None}
    assert listed_ids(tenants, "tok-a", "tenant=a") == a[::-1]


def test_filters(client: TestClient, runtime: Runtime) -> None:
    apidot = _post(client, "", 2)
    openai = _post(client, "", 1, provider="openai", model="gpt-image-2")
    batch = client.post("/v1/batches", json={"requests": [{"prompt": "x"}, {"prompt": "y"}]}).json()
    assert actions.cancel(runtime, apidot[0]).ok
    assert set(listed_ids(client, "", "provider=openai")) == set(openai)
    assert set(listed_ids(client, "", f"batch_id={batch['batch_id']}")) == set(batch["jobs"])
    assert listed_ids(client, "", "status=canceled") == [apidot[0]]
    assert listed_ids(client, "", "error_kind=canceled") == [apidot[0]]
    with runtime.read_session() as s:
        first = s.get(Job, apidot[1])
        assert first is not None
        at = first.created_at
    later = {j for j in listed_ids(client, "", "") if j != apidot[0] and j != apidot[1]}
    stamp = (at + timedelta(microseconds=1)).isoformat().replace("+00:00", "Z")
    assert set(listed_ids(client, "", f"created_after={stamp}")) == later
    assert listed_ids(client, "", f"created_before={stamp}&created_after={at.isoformat()[:26]}") == [apidot[1]]


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("status=nope", "status"),
        ("provider=nope", "provider"),
        ("error_kind=nope", "error_kind"),
        ("tenant=a%20b", "tenant"),
        ("created_after=yesterday", "created_after"),
        ("created_before=0001-01-01T00:00:00%2B05:00", "created_before"),
        ("cursor=garbage!", "cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00","not-an-id"]').decode(), "cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b'["2026-01-01T00:00:00","' + b"0" * 36 + b'"]').decode(), "cursor"),
        ("cursor=" + "A" * 300, "cursor"),
    ],
)
def test_bad_parameters_are_422_naming_them(client: TestClient, query: str, loc: str) -> None:
    response = client.get(f"/v1/jobs?{query}")
    assert response.status_code == 422, response.text
    assert [p["loc"] for p in response.json()["detail"]] == [["query", loc]]


def test_pages_follow_the_cursor_across_ties_and_new_jobs(client: TestClient) -> None:
    # A batch's jobs share one created_at: the id breaks the tie, so a page boundary inside it is exact.
    batch = client.post("/v1/batches", json={"requests": [{"prompt": str(i)} for i in range(7)]}).json()
    first = client.get("/v1/jobs?limit=3").json()
    assert len(first["jobs"]) == 3 and first["next"]
    _post(client, "", 2)  # inserted between pages: newer than everything already paged, never seen below
    seen = [j["id"] for j in first["jobs"]]
    cursor = first["next"]
    while cursor:
        page = client.get(f"/v1/jobs?limit=3&cursor={cursor}").json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next"]
    assert sorted(seen) == sorted(batch["jobs"]) and len(seen) == len(set(seen))
    assert client.get("/v1/jobs?limit=500").json()["next"] is None


def test_default_limit_is_50(client: TestClient) -> None:
    client.post("/v1/batches", json={"requests": [{"prompt": str(i)} for i in range(51)]})
    page = client.get("/v1/jobs").json()
    assert len(page["jobs"]) == 50 and page["next"] is not None


_IDS = st.uuids(version=4).map(str)
_TIMES = st.datetimes(timezones=st.timezones()).filter(lambda t: t.utcoffset() is not None)


@given(_TIMES, _IDS)
def test_a_cursor_names_exactly_the_key_it_was_made_from(at: datetime, job_id: str) -> None:
    try:
        expected = at.astimezone(UTC)
    except OverflowError:
        return  # a time that has no UTC equivalent is no created_at either
    job = Job(id=job_id, provider="apidot", model="m", request={}, status="queued", created_at=at, deadline_at=at)
    cursor = encode_cursor(job)
    assert cursor.isascii() and "=" not in cursor
    assert decode_cursor(cursor) == (expected, job_id)


@given(st.text(max_size=80))
def test_any_text_is_a_cursor_or_a_422(text: str) -> None:
    try:
        at, job_id = decode_cursor(text)
    except RequestValidationError as exc:
        assert [p["loc"] for p in exc.errors()] == [["query", "cursor"]]
        return
    assert at.tzinfo is not None and len(job_id) == 36
