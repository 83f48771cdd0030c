"""``POST /v1/providers/{provider}/resume``: admin tokens only (403 for a tenant token, 401 for none)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from imagegen.runtime import Runtime
from imagegen.store import repo
from tests.support.api import ClientFactory
from tests.support.tenancy import ADMIN_TOKEN, TENANT_TOKENS, auth


def _pause(rt: Runtime) -> None:
    with rt.session() as s:
        assert repo.pause_provider(s, provider="apidot", reason="out_of_credits", message="top up")


def _paused(rt: Runtime) -> bool:
    with rt.read_session() as s:
        state = repo.get_provider_state(s, "apidot")
        return bool(state and state.paused)


def test_resume_needs_an_admin_token(make_client: ClientFactory, runtime: Runtime) -> None:
    client = make_client(imagegen_api_tokens=TENANT_TOKENS, imagegen_admin_tokens=ADMIN_TOKEN)
    _pause(runtime)
    assert client.post("/v1/providers/apidot/resume").status_code == 401
    assert client.post("/v1/providers/apidot/resume", headers=auth("nope")).status_code == 401
    refused = client.post("/v1/providers/apidot/resume", headers=auth("tok-a"))
    assert (refused.status_code, refused.json()) == (403, {"detail": "this route needs an admin token"})
    assert _paused(runtime)
    done = client.post("/v1/providers/apidot/resume", headers=auth(ADMIN_TOKEN))
    assert done.status_code == 200 and done.json()["provider"] == "apidot"
    assert done.json()["message"].startswith("apidot unpaused;") and not _paused(runtime)
    again = client.post("/v1/providers/apidot/resume", headers=auth(ADMIN_TOKEN))
    assert again.json()["message"].startswith("apidot was not paused")


def test_unknown_provider_is_404(client: TestClient) -> None:
    for name in ("nope", "x" * 300):
        response = client.post(f"/v1/providers/{name}/resume")
        assert (response.status_code, response.json()) == (404, {"detail": "provider not found"})


def test_without_tokens_resume_is_open(client: TestClient, runtime: Runtime) -> None:
    _pause(runtime)
    assert client.post("/v1/providers/apidot/resume").status_code == 200 and not _paused(runtime)
