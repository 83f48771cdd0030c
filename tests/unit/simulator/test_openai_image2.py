"""The simulator's OpenAI (/openai/v1) and image2 (/image2/api/v1) fakes, over raw HTTP via TestClient."""

from __future__ import annotations

import base64
import email.utils
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from imagegen.simulator import SimSettings, create_app
from imagegen.simulator.directives import Fault, parse_directives
from imagegen.simulator.png import solid_png
from tests.support.clock import FakeClock

AUTH = {"Authorization": "Bearer sk-sim"}
T0 = 1_700_000_000.4
PNG = solid_png(4, 4, (9, 9, 9))
GEN = "/openai/v1/images/generations"
EDIT = "/openai/v1/images/edits"
I2 = "/image2/api/v1"


def make_client(duration: float = 0, clock: FakeClock | None = None) -> TestClient:
    settings = SimSettings(duration_s=duration)
    return TestClient(create_app(settings) if clock is None else create_app(settings, clock=clock))


def generate(c: TestClient, prompt: str, headers: dict[str, str] = AUTH, **fields: Any) -> httpx.Response:
    r: httpx.Response = c.post(GEN, json={"model": "gpt-image-2", "prompt": prompt, **fields}, headers=headers)
    return r


def edit(c: TestClient, prompt: str, images: list[tuple[str, bytes, str]], **fields: str) -> httpx.Response:
    files = [("image[]", image) for image in images]
    data = {"model": "gpt-image-2", "prompt": prompt, **fields}
    r: httpx.Response = c.post(EDIT, data=data, files=files, headers=AUTH)
    return r


def i2_submit(c: TestClient, prompt: str, headers: dict[str, str] = AUTH, **fields: Any) -> httpx.Response:
    body = {"model": "gpt-image-2", "prompt": prompt, "n": 1, "async": True, **fields}
    r: httpx.Response = c.post(f"{I2}/images/generations", json=body, headers=headers)
    return r


def i2_status(c: TestClient, task_id: str) -> httpx.Response:
    r: httpx.Response = c.get(f"{I2}/images/tasks/{task_id}", headers=AUTH)
    return r


# --- directives -----------------------------------------------------------------------------------


def test_quota_and_provider_scoped_directives() -> None:
    assert parse_directives("[[quota]]").submit_faults == (Fault("quota"),)
    assert parse_directives("[[quotax2]]", provider="openai").submit_faults == (Fault("quota", 2),)
    prompt = "x [[apidot:402]] [[openai:429x1:noheader]] [[image2:statusfail]] [[image2:slow:5]] [[500x1]]"
    assert parse_directives(prompt).submit_faults == (Fault("402"), Fault("500", 1))  # default: apidot
    assert parse_directives(prompt, "openai").submit_faults == (Fault("429", 1, "none"), Fault("500", 1))
    image2 = parse_directives(prompt, "image2")
    assert (image2.submit_faults, image2.outcome, image2.duration_s) == ((Fault("500", 1),), "statusfail", 5.0)
    assert parse_directives("[[foo:402]]").submit_faults == ()  # not a provider scope: unknown token
    assert parse_directives(prompt, "openai").tokens == parse_directives(prompt).tokens  # all recorded


def test_apidot_quota_is_its_402() -> None:
    c = make_client()
    r = c.post("/api/generate/submit", json={"model": "gpt-image-2", "input": {"prompt": "x [[quota]]"}}, headers=AUTH)
    assert r.status_code == 402 and r.json()["error"]["type"] == "insufficient_credits"


# --- OpenAI: success ------------------------------------------------------------------------------


def test_generation_answer_shape() -> None:
    c = make_client(clock=FakeClock(T0))
    r = generate(c, "a cat", quality="high", size="1536x1024", n=2)
    assert r.status_code == 200 and r.headers["x-request-id"].startswith("req_")
    body = r.json()
    assert body["created"] == 1_700_000_000 and body["output_format"] == "png" and body["size"] == "1536x1024"
    images = [base64.b64decode(d["b64_json"]) for d in body["data"]]
    assert len(images) == 2 and images[0] != images[1] and all(i.startswith(b"\x89PNG") for i in images)
    usage = body["usage"]
    assert usage["output_tokens"] == 2 * 4160
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert set(usage["input_tokens_details"]) == {"text_tokens", "image_tokens"}
    (record,) = c.get("/_sim/requests").json()
    assert record["provider"] == "openai" and record["endpoint"] == "submit" and record["task_id"] is None
    assert "image_count" not in record and "error_code" not in record


def test_slow_delays_the_answer() -> None:
    c = make_client()
    start = time.monotonic()
    assert generate(c, "x [[slow:0.2]]").status_code == 200
    assert time.monotonic() - start >= 0.2


def test_hang_delays_after_recording() -> None:
    c = make_client()
    start = time.monotonic()
    assert generate(c, "x [[hangx1:0.2]]").status_code == 200
    assert time.monotonic() - start >= 0.2
    start = time.monotonic()
    assert generate(c, "x [[hangx1:0.2]]").status_code == 200
    assert time.monotonic() - start < 0.2


def test_edit_records_the_uploaded_images() -> None:
    c = make_client()
    r = edit(c, "blue", [("a.png", PNG, "image/png"), ("b.png", PNG + b"\0\0", "image/png")], quality="low")
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["input_tokens_details"]["image_tokens"] > 0
    (record,) = c.get("/_sim/requests").json()
    assert (record["path"], record["image_count"], record["image_bytes"]) == (EDIT, 2, [len(PNG), len(PNG) + 2])
    single = c.post(EDIT, data={"prompt": "p"}, files=[("image", ("a.png", PNG, "image/png"))], headers=AUTH)
    assert single.status_code == 200  # one "image" part, like the gpt_image2 CLI sends


# --- OpenAI: faults -------------------------------------------------------------------------------


def test_rate_limit_headers() -> None:
    c = make_client(clock=FakeClock(T0))
    r = generate(c, "a [[429x1]]")
    assert r.status_code == 429
    assert r.json() == {
        "error": {
            "message": "Rate limit exceeded for images per minute in organization org-sim. Limit: 5/1min. "
            "Current: 6/1min.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert (r.headers["retry-after-ms"], r.headers["retry-after"]) == ("1000", "1")
    assert r.headers["x-ratelimit-remaining-requests"] == "0" and r.headers["x-ratelimit-reset-requests"] == "1s"
    r = generate(c, "b [[429x1:ra=3]]")
    assert (r.headers["retry-after-ms"], r.headers["retry-after"]) == ("3000", "3")
    r = generate(c, "c [[429x1:noheader]]")
    assert "retry-after" not in r.headers and "retry-after-ms" not in r.headers
    r = generate(c, "d [[429x1:date]]")
    assert email.utils.parsedate_to_datetime(r.headers["retry-after"]).timestamp() == 1_700_000_003
    assert "retry-after-ms" not in r.headers
    records = c.get("/_sim/requests").json()
    assert [(x["error_code"], x["retry_after"]) for x in records[:2]] == [("rate_limit_exceeded", r) for r in "13"]


@pytest.mark.parametrize(
    ("directive", "status", "type_", "code"),
    [
        ("quota", 429, "insufficient_quota", "insufficient_quota"),
        ("moderation", 400, "image_generation_user_error", "moderation_blocked"),
        ("400", 400, "invalid_request_error", None),
        ("401", 401, "invalid_request_error", "invalid_api_key"),
        ("403", 403, "request_forbidden", "unsupported_country_region_territory"),
        ("500", 500, "server_error", None),
        ("503", 503, "server_error", "server_is_overloaded"),
        ("504", 504, "server_error", None),
    ],
)
def test_openai_error_bodies(directive: str, status: int, type_: str, code: str | None) -> None:
    r = generate(make_client(), f"x [[{directive}]]")
    assert r.status_code == status
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert (r.json()["error"]["type"], r.json()["error"]["code"]) == (type_, code)
    if directive == "quota":
        assert "retry-after" not in r.headers  # billing, not a rate limit


def test_malformed_code500_counts_and_per_provider_counters() -> None:
    c = make_client()
    r = generate(c, "m [[malformedx1]]")
    assert r.status_code == 200 and r.text == "<html>oops"
    assert generate(c, "m [[malformedx1]]").status_code == 200
    r = generate(c, "e [[code500x1]]")
    assert r.status_code == 200 and "data" not in r.json() and r.json()["error"]["type"] == "server_error"
    # Each provider counts its own calls of a prompt: APIDot's 500 does not use up OpenAI's.
    apidot = {"model": "gpt-image-2", "input": {"prompt": "s [[500x1]]"}}
    assert c.post("/api/generate/submit", json=apidot, headers=AUTH).status_code == 500
    assert [generate(c, "s [[500x1]]").status_code for _ in range(2)] == [500, 200]
    assert [i2_submit(c, "s [[500x1]]").status_code for _ in range(2)] == [500, 200]


def test_scoped_directive_lets_a_fallback_succeed() -> None:
    c = make_client()
    apidot = {"model": "gpt-image-2", "input": {"prompt": "f [[apidot:402]]"}}
    assert c.post("/api/generate/submit", json=apidot, headers=AUTH).status_code == 402
    assert generate(c, "f [[apidot:402]]").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer invalid"}, {"Authorization": "Basic x"}])
def test_openai_auth(headers: dict[str, str]) -> None:
    c = make_client()
    r = generate(c, "x", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = c.post(EDIT, data={"prompt": "x"}, files=[("image[]", ("a.png", PNG, "image/png"))], headers=headers)
    assert r.status_code == 401


# --- OpenAI: validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "999x999"}, "size"),
        ({"size": "1000x1000"}, "size"),  # not multiples of 16
        ({"size": "4096x2048"}, "size"),  # long edge
        ({"size": "3840x1008"}, "size"),  # ratio > 3:1
        ({"size": "512x512"}, "size"),  # too few pixels
        ({"model": "gpt-image-1", "size": "2048x1152"}, "size"),  # custom sizes are gpt-image-2 only
        ({"quality": "ultra"}, "quality"),
        ({"quality": "hd"}, "quality"),
        ({"response_format": "b64_json"}, "response_format"),
        ({"format": "png"}, "format"),
        ({"async": True}, "async"),
        ({"n": 0}, "n"),
        ({"n": "2"}, "n"),
        ({"model": "gpt-9"}, "model"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 32_001}, "prompt"),
        ({"output_format": "gif"}, "output_format"),
        ({"background": "pink"}, "background"),
    ],
)
def test_generation_validation(fields: dict[str, Any], param: str) -> None:
    r = make_client().post(GEN, json={"model": "gpt-image-2", "prompt": "p", **fields}, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "fields",
    [
        {"size": "2048x1152", "quality": "auto"},
        {"size": "3840x2160", "quality": "high"},
        {"size": "auto", "output_format": "webp", "background": "opaque", "moderation": "low"},
        {"model": "dall-e-3", "response_format": "b64_json", "quality": "hd", "size": "1792x1024"},
    ],
)
def test_generation_accepts_valid_bodies(fields: dict[str, Any]) -> None:
    assert (
        make_client().post(GEN, json={"model": "gpt-image-2", "prompt": "p", **fields}, headers=AUTH).status_code == 200
    )


def test_non_json_generation_is_400() -> None:
    r = make_client().post(GEN, content=b"nope", headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("images", "fields", "param", "code"),
    [
        ([], {}, "image", "missing_required_parameter"),
        ([("a.txt", b"hello", "text/plain")], {}, "image", "invalid_image_format"),
        ([("a.png", b"not an image", "image/png")], {}, "image", "invalid_image"),
        ([("a.png", PNG, "image/png")] * 17, {}, "image", "array_above_max_length"),
        ([("a.png", PNG, "image/png")], {"size": "1x1"}, "size", "invalid_value"),
        ([("a.png", PNG, "image/png")], {"moderation": "low"}, "moderation", "unknown_parameter"),
    ],
)
def test_edit_validation(images: list[tuple[str, bytes, str]], fields: dict[str, str], param: str, code: str) -> None:
    c = make_client()
    r = edit(c, "p", images, **fields) if images else c.post(EDIT, files={"prompt": (None, "p")}, headers=AUTH)
    assert r.status_code == 400, r.text
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, code)


def test_edit_needs_multipart() -> None:
    c = make_client()
    assert c.post(EDIT, json={"prompt": "p", "image": "x"}, headers=AUTH).status_code == 400
    no_close = b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\np'  # no closing delimiter
    truncated = c.post(EDIT, content=no_close, headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"})
    assert truncated.status_code == 400


# --- image2 ---------------------------------------------------------------------------------------


def test_image2_lifecycle_and_files() -> None:
    clock = FakeClock(T0)
    c = make_client(duration=10, clock=clock)
    r = i2_submit(c, "a fox", size="1024x1024", image=["https://a.example/r.png"])
    assert r.status_code == 200
    body = r.json()
    tid = body["task_id"]
    assert tid.startswith("img2-1700000000-") and body["status"] == "pending" and body["created"] == 1_700_000_000
    assert body["data"] == [{"url": None, "status": "pending"}]
    seen = []
    for _ in range(3):
        state = i2_status(c, tid).json()
        assert "error" not in state
        seen.append((state["status"], state["progress"], len(state["data"])))
        clock.t += 5
    assert seen == [("pending", 0, 0), ("processing", 49, 0), ("completed", 100, 1)]
    (item,) = i2_status(c, tid).json()["data"]
    assert item == {"url": f"http://testserver/files/{tid}.png", "revised_prompt": "a fox", "status": "completed"}
    f = c.get(f"/files/{tid}.png")
    assert f.status_code == 200 and f.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("directive", "message", "code"),
    [
        ("statusfail", "Generation failed: upstream model error", "generation_failed"),
        ("safetyfail", "Image rejected by the safety system", "moderation_blocked"),
    ],
)
def test_image2_failed_tasks(directive: str, message: str, code: str) -> None:
    c = make_client()
    tid = i2_submit(c, f"x [[{directive}]]").json()["task_id"]
    body = i2_status(c, tid).json()
    assert (body["status"], body["data"]) == ("failed", [])
    assert body["error"]["message"] == message and body["error"]["code"] == code
    assert c.get(f"/files/{tid}.png").status_code == 404


def test_image2_never_slow_instant() -> None:
    clock = FakeClock(T0)
    c = make_client(duration=100, clock=clock)
    never = i2_submit(c, "x [[never]]").json()["task_id"]
    slow = i2_submit(c, "x [[slow:2]]").json()["task_id"]
    instant = i2_submit(c, "x [[instant]]").json()["task_id"]
    assert i2_status(c, instant).json()["status"] == "completed"
    clock.t += 2
    assert i2_status(c, slow).json()["status"] == "completed"
    clock.t += 10_000
    assert (i2_status(c, never).json()["status"], i2_status(c, never).json()["progress"]) == ("processing", 50)
    assert c.post(f"/_sim/tasks/{never}/finish").status_code == 200
    assert i2_status(c, never).json()["status"] == "completed"


def test_image2_faults_and_records() -> None:
    c = make_client(clock=FakeClock(T0))
    r = i2_submit(c, "q [[429x1]]")
    assert r.status_code == 429 and r.headers["retry-after-ms"] == "1000"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    tid = i2_submit(c, "q [[429x1]]").json()["task_id"]
    p = i2_submit(c, "p [[poll500x1]] [[pollmalformedx1]]").json()["task_id"]
    assert i2_status(c, p).status_code == 500
    assert i2_status(c, p).text == "<html>oops"
    assert i2_status(c, p).json()["status"] == "completed"
    assert i2_submit(c, "h [[quota]]").json()["error"]["code"] == "insufficient_quota"
    records = c.get("/_sim/requests", params={"task_id": tid}).json()
    assert [(r["provider"], r["endpoint"], r["status_code"]) for r in records] == [("image2", "submit", 200)]
    first = c.get("/_sim/requests").json()[0]
    assert (first["provider"], first["error_code"], first["retry_after"]) == ("image2", "rate_limit_exceeded", "1")


def test_image2_hang_creates_the_task_first() -> None:
    c = make_client()
    start = time.monotonic()
    r = i2_submit(c, "x [[hangx1:0.2]]")
    assert r.status_code == 200 and time.monotonic() - start >= 0.2


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"async": False}, "async"),
        ({"async": None}, "async"),
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"size": "999x999"}, "size"),
        ({"quality": "ultra"}, "quality"),
        ({"image": "https://a/b.png"}, "image"),
        ({"image": ["ftp://a/b.png"]}, "image"),
        ({"model": ""}, "model"),
        ({"prompt": " "}, "prompt"),
    ],
)
def test_image2_validation(fields: dict[str, Any], param: str) -> None:
    body = {"model": "gpt-image-2", "prompt": "p", "n": 1, "async": True, **fields}
    r = make_client().post(f"{I2}/images/generations", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_image2_auth_and_unknown_tasks() -> None:
    c = make_client()
    assert i2_submit(c, "x", headers={"Authorization": "Bearer invalid"}).status_code == 401
    tid = i2_submit(c, "x").json()["task_id"]
    assert c.get(f"{I2}/images/tasks/{tid}", headers={"Authorization": "Bearer invalid"}).status_code == 401
    r = i2_status(c, "img2-0-nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "async_task_not_found"
    apidot = c.post("/api/generate/submit", json={"model": "gpt-image-2", "input": {"prompt": "a"}}, headers=AUTH)
    assert i2_status(c, apidot.json()["data"]["task_id"]).status_code == 404  # not image2's task
