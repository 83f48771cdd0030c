"""The OpenAI-compatible front door through the real ``openai`` SDK, against a real ``imagegen api``, worker,
beat, Redis and the simulator (APIDot serves every job, as ``IMAGEGEN_OPENAI_COMPAT_PROVIDER`` defaults).

Each test logs what it called and what came back (``TRANSCRIPT``); ``pytest -s`` prints it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import Image as OpenAIImage
from openai.types import ImagesResponse
from PIL import Image

from imagegen.store import repo
from imagegen.store.models import Job
from tests.support.stack import Stack, revive_worker, tenant_api_stack
from tests.support.tenancy import auth

pytestmark = pytest.mark.pipeline

#: Short, so the run-out case takes seconds; every other job here ends well within it.
WAIT_S = 6
TRANSCRIPT: list[str] = []


@pytest.fixture(scope="module")
def own_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with tenant_api_stack(database_factory(), tmp_path_factory, IMAGEGEN_OPENAI_COMPAT_WAIT_S=str(WAIT_S)) as stack:
        yield stack
    print("\n--- SDK transcript ---\n" + "\n".join(TRANSCRIPT))


@pytest.fixture
def stack(own_stack: Stack) -> Stack:
    revive_worker(own_stack)
    return own_stack


def sdk(stack: Stack, token: str = "tok-a", **options: Any) -> openai.OpenAI:
    """The SDK pointed at our API: only ``base_url`` changes."""
    assert stack.api_url is not None
    return openai.OpenAI(base_url=stack.api_url + "/v1", api_key=token, **options)


def images(answer: ImagesResponse) -> list[OpenAIImage]:
    """The answer's images (the SDK types ``data`` as optional)."""
    assert answer.data is not None
    return answer.data


def log(call: str, outcome: str) -> None:
    TRANSCRIPT.append(f"{call}\n    -> {outcome}")


def jobs_of(stack: Stack, prompt: str, tenant: str = "a") -> list[Job]:
    with stack.rt.read_session() as s:
        return [j for j in repo.list_jobs(s, tenant=tenant, limit=500) if j.request["prompt"] == prompt]


def test_generate_b64_json_is_the_stored_png(stack: Stack) -> None:
    prompt = stack.prompt("a lighthouse [[slow:1]]")
    answer = sdk(stack).images.generate(model="gpt-image-2", prompt=prompt, size="1536x1024", quality="low")
    data = base64.b64decode(images(answer)[0].b64_json or "")
    (job,) = jobs_of(stack, prompt)
    log(
        f'images.generate(model="gpt-image-2", prompt={prompt!r}, size="1536x1024", quality="low")',
        f"created={answer.created} data=[b64_json: {len(data)} bytes PNG] output_format={answer.output_format}"
        f" size={answer.size} quality={answer.quality}; job {job.id} {job.status}",
    )
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert job.status == "succeeded" and job.result is not None
    assert hashlib.sha256(data).hexdigest() == job.result[0]["sha256"]
    assert (job.request["size"], job.request["quality"]) == ("3:2", "low")
    assert answer.output_format == "png" and answer.quality == "low"


def test_generate_url_downloads_with_the_same_token_and_not_another_tenants(stack: Stack) -> None:
    prompt = stack.prompt("a red fox")
    answer = sdk(stack).images.generate(prompt=prompt, response_format="url")
    url = images(answer)[0].url or ""
    got = httpx.get(url, headers=auth("tok-a"), timeout=10)
    theirs = httpx.get(url, headers=auth("tok-b"), timeout=10)
    log(
        f'images.generate(prompt={prompt!r}, response_format="url")',
        f"data=[url: {url}]; GET with a's token: {got.status_code} {got.headers.get('content-type')}"
        f" {len(got.content)} bytes; with b's token: {theirs.status_code}",
    )
    (job,) = jobs_of(stack, prompt)
    assert url == f"{stack.api_url}/v1/jobs/{job.id}/images/0"
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
    assert job.result is not None and hashlib.sha256(got.content).hexdigest() == job.result[0]["sha256"]
    assert theirs.status_code == 404


def test_n_2_is_two_images_of_one_batch(stack: Stack) -> None:
    prompt = stack.prompt("two cats")
    answer = sdk(stack).images.generate(prompt=prompt, n=2, size="1024x1024")
    jobs = jobs_of(stack, prompt)
    log(
        f'images.generate(prompt={prompt!r}, n=2, size="1024x1024")',
        f"data=[{len(images(answer))} x b64_json]; jobs {[j.id for j in jobs]} in batch {jobs[0].batch_id}",
    )
    assert len(images(answer)) == 2 and len(jobs) == 2
    assert jobs[0].batch_id is not None and jobs[0].batch_id == jobs[1].batch_id
    digests = {hashlib.sha256(base64.b64decode(d.b64_json or "")).hexdigest() for d in images(answer)}
    assert digests == {(j.result or [{}])[0]["sha256"] for j in jobs}
    assert stack.submits(prompt) == 2


def test_edit_sends_the_upload_to_apidot_as_a_url_it_can_fetch(stack: Stack) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "navy").save(buffer, "PNG")
    upload = buffer.getvalue()
    prompt = stack.prompt("make it sunset")
    answer = sdk(stack).images.edit(image=("in.png", upload, "image/png"), prompt=prompt, size="1024x1536")
    (job,) = jobs_of(stack, prompt)
    (record,) = stack.records(prompt, "submit")
    (reference,) = record["image_urls"]
    fetched = httpx.get(reference, timeout=10)  # as APIDot would: no bearer token, the URL is signed
    forged = httpx.get(reference.split("?")[0] + "?token=forged", timeout=10)
    log(
        f'images.edit(image=("in.png", <{len(upload)} bytes PNG>), prompt={prompt!r}, size="1024x1536")',
        f"data=[b64_json: {len(base64.b64decode(images(answer)[0].b64_json or ''))} bytes]; APIDot was sent"
        f" model={job.request['model']} image_urls=[{reference}]; that URL without a token: {fetched.status_code}"
        f" ({len(fetched.content)} bytes, the upload's), with a forged token: {forged.status_code}",
    )
    assert job.status == "succeeded" and job.request["model"] == "gpt-image-2-edit"
    assert job.request["size"] == "2:3"
    assert fetched.status_code == 200 and fetched.content == upload
    assert forged.status_code == 404


def test_moderation_is_a_bad_request_with_code_moderation_blocked(stack: Stack) -> None:
    prompt = stack.prompt("something forbidden [[moderation]]")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(stack).images.generate(prompt=prompt)
    error = caught.value
    log(
        f"images.generate(prompt={prompt!r})",
        f"openai.BadRequestError {error.status_code} code={error.code}: {error.message}",
    )
    assert error.status_code == 400 and error.code == "moderation_blocked"
    assert len(jobs_of(stack, prompt)) == 1


def test_a_held_key_is_a_clear_error_within_the_wait_not_a_hang(stack: Stack, resume_after: None) -> None:
    prompt = stack.prompt("out of credits [[402]]")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(stack).images.generate(prompt=prompt)  # the SDK's default retries: it is told not to
    elapsed = time.monotonic() - started
    error = caught.value
    log(
        f"images.generate(prompt={prompt!r})  # max_retries left at 2",
        f"{type(error).__name__} {error.status_code} code={error.code} Retry-After="
        f"{error.response.headers.get('retry-after')} after {elapsed:.1f} s: {error.message}",
    )
    assert error.status_code == 429 and error.code == "insufficient_quota"
    assert error.response.headers["retry-after"] and error.response.headers["x-should-retry"] == "false"
    assert elapsed < WAIT_S
    (job,) = jobs_of(stack, prompt)
    assert job.status == "held" and job.id in error.message
    assert stack.submits(prompt) == 1  # not retried, not multiplied


def test_the_wait_running_out_is_a_504_naming_the_job(stack: Stack) -> None:
    prompt = stack.prompt("forever [[never]]")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(stack).images.generate(prompt=prompt)
    error = caught.value
    (job,) = jobs_of(stack, prompt)
    follow = httpx.get(f"{stack.api_url}/v1/jobs/{job.id}", headers=auth("tok-a"), timeout=10)
    log(
        f"images.generate(prompt={prompt!r})",
        f"openai.InternalServerError {error.status_code} code={error.code}: {error.message};"
        f" GET /v1/jobs/{job.id}: {follow.json()['status']}",
    )
    assert error.status_code == 504 and job.id in error.message
    assert len(jobs_of(stack, prompt)) == 1  # unkeyed: the SDK was told not to retry
    assert follow.json()["status"] == "running"
    httpx.post(f"{stack.api_url}/v1/jobs/{job.id}/cancel", headers=auth("tok-a"), timeout=10)


def test_the_sdks_own_retries_never_create_a_second_job(stack: Stack) -> None:
    prompt = stack.prompt("worth the wait [[slow:3]]")
    key = f"sdk-retry-{time.time_ns()}"
    client = sdk(stack, timeout=2.0, max_retries=2)
    started = time.monotonic()
    answer = client.images.generate(prompt=prompt, extra_headers={"Idempotency-Key": key})
    elapsed = time.monotonic() - started
    jobs = jobs_of(stack, prompt)
    log(
        f'OpenAI(timeout=2.0, max_retries=2).images.generate(prompt={prompt!r}, extra_headers={{"Idempotency-Key":'
        f' "{key}"}})',
        f"data=[{len(images(answer))} x b64_json] after {elapsed:.1f} s (the first attempt timed out client-side);"
        f" jobs with that prompt: {len(jobs)} (key {jobs[0].idempotency_key}), upstream submits:"
        f" {stack.submits(prompt)}",
    )
    assert elapsed > 2.0  # the first attempt did time out
    assert len(images(answer)) == 1 and len(jobs) == 1 and jobs[0].idempotency_key == key
    assert stack.submits(prompt) == 1


def test_another_tenant_cannot_reach_a_job_through_these_routes(stack: Stack) -> None:
    prompt = stack.prompt("mine only")
    key = f"tenant-{time.time_ns()}"
    mine = sdk(stack).images.generate(prompt=prompt, response_format="url", extra_headers={"Idempotency-Key": key})
    theirs = sdk(stack, "tok-b").images.generate(
        prompt=prompt, response_format="url", extra_headers={"Idempotency-Key": key}
    )
    log(
        f'tenants a and b: images.generate(prompt={prompt!r}, response_format="url", Idempotency-Key "{key}")',
        f"a: {images(mine)[0].url}; b: {images(theirs)[0].url} (a job of b's own)",
    )
    assert images(mine)[0].url != images(theirs)[0].url
    assert httpx.get(images(mine)[0].url or "", headers=auth("tok-b"), timeout=10).status_code == 404
    assert len(jobs_of(stack, prompt, "a")) == 1 and len(jobs_of(stack, prompt, "b")) == 1
    with pytest.raises(openai.AuthenticationError) as denied:
        sdk(stack, "tok-nobody").images.generate(prompt=prompt)
    log("images.generate with an unknown token", f"openai.AuthenticationError 401 code={denied.value.code}")
    assert denied.value.code == "invalid_api_key"
