"""The OpenAI-compatible routes in process: request mapping, answers from stored copies, and every error in
OpenAI's shape. No worker runs here: a job that must have ended is prepared under the call's
Idempotency-Key before the call, so the route finds it settled; the real pipeline is in
tests/pipeline/test_openai_compat.py."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from config.settings import Settings
from imagegen.api.openai_shapes import parse_call, to_requests
from imagegen.producer import create_job
from imagegen.runtime import Runtime
from imagegen.storage import reference_key, store_image, upload_token, upload_url
from imagegen.store import repo
from imagegen.store.models import Job
from tests.support.api import UNREACHABLE_REDIS, ClientFactory
from tests.support.recorder import RecordingPublisher
from tests.support.results import image_bytes
from tests.support.tenancy import TENANT_TOKENS, auth

PNG = image_bytes(64, 48)
GEN = "/v1/images/generations"
EDIT = "/v1/images/edits"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Tenants a and b, a results directory of the test's own, and a wait that runs out at once."""
    return Settings(
        database_url=f"sqlite:///{tmp_path}/t.db",
        redis_url=UNREACHABLE_REDIS,
        imagegen_api_tokens=TENANT_TOKENS,
        imagegen_results_dir=tmp_path / "results",
        imagegen_openai_compat_wait_s=0.3,
        apidot_api_key="sk-test",
    )


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    return error


def _prepared(rt: Runtime, body: dict[str, Any], key: str, *, tenant: str = "a", **row: Any) -> list[Job]:
    """The jobs the route will find for ``body`` under ``key``, moved to ``row`` (status, result, ...)."""
    requests = to_requests(parse_call(body, "apidot"), tenant=tenant, idempotency_key=key)
    jobs = [create_job(rt, r)[0] for r in requests]
    for index, job in enumerate(jobs):
        values = dict(row)
        if values.get("status") == "succeeded":
            stored = store_image(rt.store, job.id, 0, image_bytes(64, 48, color=f"#{index:02x}8080"), None)
            values["result"] = [{"url": "https://cdn.example/0.png", **stored.to_dict()}]
        with rt.session() as s:
            s.execute(sa.update(Job).where(Job.id == job.id).values(**values))
    with rt.session() as s:
        return [j for j in (repo.get_job(s, job.id) for job in jobs) if j is not None]


# --- auth ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eA=="}])
def test_a_missing_or_bad_token_is_openais_401(client: TestClient, headers: dict[str, str]) -> None:
    error = _error(client.post(GEN, json={"prompt": "x"}, headers=headers), 401)
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert _error(client.post(EDIT, headers=headers), 401)["code"] == "invalid_api_key"


def test_the_rest_of_the_api_keeps_its_own_shape(client: TestClient) -> None:
    assert client.get("/v1/jobs").json() == {"detail": "missing or invalid bearer token"}


# --- invalid input: 400 naming the parameter ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "n": "2"}, "n"),
        ({"prompt": "x", "size": "1000x1000"}, "size"),
        ({"prompt": "x", "size": "big"}, "size"),
        ({"prompt": "x", "quality": "ultra"}, "quality"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x", "stream": True}, "stream"),
        ({"prompt": "x", "output_format": "gif"}, "output_format"),
        ({"prompt": "x", "model": "not a model!"}, "model"),
        ({"prompt": "x", "user": 7}, "user"),
    ],
)
def test_invalid_input_is_a_400_naming_the_param(client: TestClient, body: dict[str, Any], param: str) -> None:
    error = _error(client.post(GEN, json=body, headers=auth("tok-a")), 400)
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error


def test_a_body_that_is_not_json_is_a_400(client: TestClient) -> None:
    response = client.post(GEN, content=b"{nope", headers={**auth("tok-a"), "Content-Type": "application/json"})
    assert _error(response, 400)["param"] is None


def _png_file(name: str = "in.png", data: bytes = PNG) -> tuple[str, tuple[str, bytes, str]]:
    return ("image", (name, data, "image/png"))


@pytest.mark.parametrize(
    ("files", "data", "param"),
    [
        ([], {"prompt": "x"}, "image"),
        ([("image", ("a.txt", b"not an image", "text/plain"))], {"prompt": "x"}, "image"),
        ([_png_file(), ("mask", ("m.png", PNG, "image/png"))], {"prompt": "x"}, "mask"),
        ([_png_file()], {"prompt": "x", "n": "zero"}, "n"),
        ([_png_file()], {}, "prompt"),
    ],
)
def test_invalid_edits_are_a_400_naming_the_param(
    make_client: ClientFactory, files: list[Any], data: dict[str, str], param: str
) -> None:
    client = make_client(imagegen_public_url="https://imagegen.example")
    # A text-only part keeps the body multipart when there is no file at all.
    files = files or [("user", (None, "u"))]
    error = _error(client.post(EDIT, files=files, data=data, headers=auth("tok-a")), 400)
    assert error["param"] == param, error


def test_edits_on_apidot_need_a_public_url(client: TestClient, runtime: Runtime) -> None:
    response = client.post(EDIT, files=[_png_file()], data={"prompt": "x"}, headers=auth("tok-a"))
    assert "IMAGEGEN_PUBLIC_URL" in _error(response, 400)["message"]


# --- mapping: what is queued -------------------------------------------------------------------------


def test_the_body_is_queued_in_the_providers_terms_then_the_wait_runs_out_with_the_job_id(
    client: TestClient, runtime: Runtime, publisher: RecordingPublisher
) -> None:
    body = {"prompt": "a fox", "size": "1536x1024", "quality": "hd", "model": "gpt-image-1", "user": "u-1"}
    response = client.post(GEN, json=body, headers=auth("tok-a"))
    error = _error(response, 504)
    with runtime.session() as s:
        (job,) = repo.list_jobs(s, tenant="a")
    assert job.id in error["message"] and f"/v1/jobs/{job.id}" in error["message"]
    assert error["code"] == "timeout" and response.headers["x-should-retry"] == "false"
    assert response.headers["Location"] == f"/v1/jobs/{job.id}"
    assert job.request == {
        "prompt": "a fox",
        "provider": "apidot",
        "model": "gpt-image-2",
        "quality": "high",
        "size": "3:2",
        "metadata": {"openai_user": "u-1"},
        "priority": "interactive",
    }
    assert [s.job_id for s in publisher.steps] == [job.id]


def test_n_images_are_one_batch_keyed_key_then_key_hash_index(
    client: TestClient, runtime: Runtime, publisher: RecordingPublisher
) -> None:
    headers = {**auth("tok-a"), "Idempotency-Key": "k-batch"}
    response = client.post(GEN, json={"prompt": "three", "n": 3, "size": "2048x1152"}, headers=headers)
    assert _error(response, 504)["code"] == "timeout"
    assert "x-should-retry" not in response.headers  # keyed: a retry waits on the same jobs
    with runtime.session() as s:
        jobs = repo.list_jobs(s, tenant="a")
    assert sorted(j.idempotency_key or "" for j in jobs) == ["k-batch", "k-batch#1", "k-batch#2"]
    assert len({j.batch_id for j in jobs}) == 1 and jobs[0].batch_id is not None
    assert {(j.request["size"], j.request["resolution"]) for j in jobs} == {("2048x1152", "2K")}
    again = client.post(GEN, json={"prompt": "three", "n": 3, "size": "2048x1152"}, headers=headers)
    assert again.status_code == 504 and len(publisher.steps) == 3  # the same jobs, not three more


def test_a_key_reused_for_another_body_is_a_409(client: TestClient) -> None:
    headers = {**auth("tok-a"), "Idempotency-Key": "k-409"}
    client.post(GEN, json={"prompt": "one"}, headers=headers)
    response = client.post(GEN, json={"prompt": "another"}, headers=headers)
    assert _error(response, 409)["code"] == "idempotency_key_reused"
    assert response.headers["x-should-retry"] == "false"


# --- answers -----------------------------------------------------------------------------------------


def test_b64_json_is_the_stored_copy_with_echo_and_summed_usage(client: TestClient, runtime: Runtime) -> None:
    body = {"prompt": "stored", "n": 2, "quality": "low", "size": "1024x1024"}
    usage = {"input_tokens": 5, "output_tokens": 100, "total_tokens": 105, "input_tokens_details": {"text_tokens": 5}}
    jobs = _prepared(runtime, body, "k-b64", status="succeeded", usage=usage)
    response = client.post(GEN, json=body, headers={**auth("tok-a"), "Idempotency-Key": "k-b64"})
    assert response.status_code == 200, response.text
    answer = response.json()
    stored = [runtime.store.get(f"{j.id}/0.png") for j in jobs]
    assert [base64.b64decode(d["b64_json"]) for d in answer["data"]] == stored
    assert [hashlib.sha256(s).hexdigest() for s in stored] == [(j.result or [{}])[0]["sha256"] for j in jobs]
    assert (answer["output_format"], answer["size"], answer["quality"]) == ("png", "64x48", "low")
    assert answer["usage"] == {
        "input_tokens": 10,
        "output_tokens": 200,
        "total_tokens": 210,
        "input_tokens_details": {"text_tokens": 10},
    }
    assert isinstance(answer["created"], int)


def test_url_answers_point_at_our_download_route(make_client: ClientFactory, runtime: Runtime) -> None:
    body = {"prompt": "linked", "response_format": "url"}
    (job,) = _prepared(runtime, body, "k-url", status="succeeded")
    headers = {**auth("tok-a"), "Idempotency-Key": "k-url"}
    url = make_client().post(GEN, json=body, headers=headers).json()["data"][0]["url"]
    assert url == f"http://testserver/v1/jobs/{job.id}/images/0"
    public = make_client(imagegen_public_url="https://imagegen.example/")
    assert public.post(GEN, json=body, headers=headers).json()["data"] == [
        {"url": f"https://imagegen.example/v1/jobs/{job.id}/images/0"}
    ]
    client = make_client()
    assert client.get(url.removeprefix("http://testserver"), headers=auth("tok-a")).content == runtime.store.get(
        f"{job.id}/0.png"
    )
    assert client.get(url.removeprefix("http://testserver"), headers=auth("tok-b")).status_code == 404


# --- endings as errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "status", "code", "type_"),
    [
        ({"status": "failed", "error_kind": "content_rejected"}, 400, "moderation_blocked", "invalid_request_error"),
        ({"status": "failed", "error_kind": "invalid_request"}, 400, "invalid_request", "invalid_request_error"),
        ({"status": "held", "error_kind": "insufficient_credits"}, 429, "insufficient_quota", "insufficient_quota"),
        ({"status": "held", "error_kind": "auth_failed"}, 503, "auth_failed", "server_error"),
        ({"status": "failed", "error_kind": "generation_failed"}, 502, "generation_failed", "server_error"),
        ({"status": "expired", "error_kind": "deadline_exceeded"}, 500, "deadline_exceeded", "server_error"),
        ({"status": "canceled", "error_kind": "canceled"}, 500, "canceled", "server_error"),
    ],
)
def test_an_ending_is_an_openai_error(
    client: TestClient, runtime: Runtime, row: dict[str, Any], status: int, code: str, type_: str
) -> None:
    key = f"k-{code}"
    (job,) = _prepared(runtime, {"prompt": code}, key, error_message="upstream said no", **row)
    response = client.post(GEN, json={"prompt": code}, headers={**auth("tok-a"), "Idempotency-Key": key})
    error = _error(response, status)
    assert (error["code"], error["type"]) == (code, type_)
    assert job.id in error["message"]
    if row["status"] == "held":
        assert response.headers["retry-after"] == "300" and response.headers["x-should-retry"] == "false"


def test_another_tenant_reusing_a_key_gets_a_job_of_its_own(client: TestClient, runtime: Runtime) -> None:
    body = {"prompt": "mine"}
    _prepared(runtime, body, "k-shared", status="succeeded")
    response = client.post(GEN, json=body, headers={**auth("tok-b"), "Idempotency-Key": "k-shared"})
    assert _error(response, 504)["code"] == "timeout"  # b's own new job, still queued
    with runtime.session() as s:
        assert len(repo.list_jobs(s, tenant="b")) == 1 and len(repo.list_jobs(s, tenant="a")) == 1


# --- uploads, served to the provider -----------------------------------------------------------------


def test_an_edit_stores_the_upload_and_the_provider_url_is_signed_for_it(
    make_client: ClientFactory, runtime: Runtime
) -> None:
    client = make_client(imagegen_public_url="https://imagegen.example", imagegen_callback_token_secret=SecretStr("s"))
    response = client.post(
        EDIT, files=[("image[]", ("in.png", PNG, "image/png"))], data={"prompt": "x", "n": "1"}, headers=auth("tok-a")
    )
    assert response.status_code == 504
    with runtime.session() as s:
        (job,) = repo.list_jobs(s, tenant="a")
    (key,) = job.request["image_files"]
    assert job.request["model"] == "gpt-image-2-edit" and runtime.store.get(key) == PNG
    url = upload_url("https://imagegen.example", b"imagegen-upload:s", key)
    assert url is not None
    path = url.removeprefix("https://imagegen.example")
    got = client.get(path)
    assert got.status_code == 200 and got.content == PNG and got.headers["content-type"] == "image/png"
    assert client.get(path[:-3] + "AAA").status_code == 404
    assert client.get(path.split("?")[0]).status_code == 404


# --- the SDK itself ----------------------------------------------------------------------------------


def test_the_openai_sdk_sends_no_idempotency_key_unless_told_and_repeats_a_given_one() -> None:
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(
            500, json={"error": {"message": "x", "type": "server_error", "param": None, "code": None}}
        )

    sdk = openai.OpenAI(
        api_key="t",
        base_url="http://x/v1",
        max_retries=1,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with pytest.raises(openai.InternalServerError):
        sdk.images.generate(prompt="x")
    assert len(seen) == 2 and not any("idempotency-key" in h for h in seen)
    seen.clear()
    with pytest.raises(openai.InternalServerError):
        sdk.images.generate(prompt="x", extra_headers={"Idempotency-Key": "mine"})
    assert [h["idempotency-key"] for h in seen] == ["mine", "mine"]


def test_the_sdk_reads_our_errors(client: TestClient) -> None:
    sdk = openai.OpenAI(api_key="tok-a", base_url="http://testserver/v1", max_retries=0, http_client=client)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.images.generate(prompt="x", size="big")
    assert bad.value.param == "size" and bad.value.code is None
    wrong = openai.OpenAI(api_key="nope", base_url="http://testserver/v1", max_retries=0, http_client=client)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.images.generate(prompt="x")
    assert denied.value.code == "invalid_api_key"


def test_the_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    generate = paths["/v1/images/generations"]["post"]
    assert "prompt" in generate["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"400", "401", "429", "504"} <= set(generate["responses"])
    edit = paths["/v1/images/edits"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert edit["properties"]["image"]["items"]["format"] == "binary"


def test_without_a_shared_secret_no_upload_is_served(make_client: ClientFactory, runtime: Runtime) -> None:
    """No signing secret: not even a token made with the built-in fallback key reads an upload."""
    key, content_type = reference_key(PNG)
    runtime.store.put(key, PNG, content_type)
    client = make_client(imagegen_public_url="https://imagegen.example")
    assert client.app.state.api.settings.upload_token_key is None  # type: ignore[attr-defined]
    forged = upload_token(b"imagegen-callback:unconfigured", key)
    name = key.removeprefix("uploads/")
    assert client.get(f"/uploads/{name}", params={"token": forged}).status_code == 404
    response = client.post(
        EDIT, files=[("image", ("in.png", PNG, "image/png"))], data={"prompt": "x"}, headers=auth("tok-a")
    )
    assert "IMAGEGEN_CALLBACK_TOKEN_SECRET" in _error(response, 400)["message"]


def test_a_key_with_the_per_image_separator_is_refused(client: TestClient, publisher: RecordingPublisher) -> None:
    """`k#1` would otherwise name the second image of an earlier n=2 call keyed `k`."""
    response = client.post(GEN, json={"prompt": "x"}, headers={**auth("tok-a"), "Idempotency-Key": "k#1"})
    assert _error(response, 400)["code"] == "invalid_idempotency_key"
    assert publisher.steps == []
