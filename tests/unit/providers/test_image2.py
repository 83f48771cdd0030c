"""image2 client: submit body, task parsing, error mapping; MockTransport and simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from imagegen.errors import AccountError, ErrorKind, FinalError, MaybeSentError, ProviderError, RetryableError
from imagegen.providers.base import Phase, SubmitResult, UpstreamState
from imagegen.providers.http import is_safety_message
from imagegen.providers.image2 import Image2Provider, build_body, parse_task
from imagegen.request import ImageRequest
from imagegen.simulator import SimSettings, create_app
from tests.support import recorder
from tests.support.clock import FakeClock

BASE = "https://image2.test/api/v1/"
KEY = "i2-key"
REQ = ImageRequest(provider="image2", prompt="a cat", size="1536x1024", quality="high")
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder(recorder.Recorder):
    def default_body(self, request: httpx.Request) -> Any:
        return {"task_id": "img2-1", "status": "pending", "created": 1}


def provider(handler: Handler) -> Image2Provider:
    return Image2Provider(httpx.Client(transport=httpx.MockTransport(handler)), base_url=BASE, api_key=KEY)


def raises(call: Callable[[], object]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call()
    return info.value


# --- submit ---------------------------------------------------------------------------------------


def test_submit_sends_the_async_body() -> None:
    rec = Recorder()
    req = ImageRequest(provider="image2", prompt="edit", size="1024x1024", image_urls=["https://a.example/r.png"])
    result = provider(rec).submit(req, callback_url="https://me.example/hook")
    (request,) = rec.requests
    assert (request.method, str(request.url)) == ("POST", "https://image2.test/api/v1/images/generations")
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "gpt-image-2",
        "prompt": "edit",
        "n": 1,
        "size": "1024x1024",
        "image": ["https://a.example/r.png"],
        "async": True,
    }
    assert result == SubmitResult(task_id="img2-1", status="pending", http_status=200)


def test_submit_body_has_only_fields_that_are_set() -> None:
    assert build_body(ImageRequest(provider="image2", prompt="p")) == {
        "model": "gpt-image-2",
        "prompt": "p",
        "n": 1,
        "async": True,
    }
    assert "quality" not in build_body(REQ)  # not in image2's documented body


@pytest.mark.parametrize(
    "body",
    [{}, {"task_id": ""}, {"task_id": 7}, {"task_id": "t" * 201}, {"data": [{"url": None, "status": "pending"}]}],
)
def test_submit_answer_without_task_id_is_upstream_unavailable(body: dict[str, Any]) -> None:
    err = raises(lambda: provider(Recorder(200, body)).submit(REQ))
    assert isinstance(err, RetryableError) and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert (err.message, err.http_status) == ("submit answer has no task_id", 200)


def test_submit_status_is_optional() -> None:
    assert provider(Recorder(200, {"task_id": "t"})).submit(REQ).status is None


# --- status ---------------------------------------------------------------------------------------


def test_status_calls_the_task_endpoint_with_an_escaped_id() -> None:
    rec = Recorder(200, {"status": "pending"})
    provider(rec).status("a/../b?x=1")
    (request,) = rec.requests
    assert request.method == "GET" and request.url.raw_path == b"/api/v1/images/tasks/a%2F..%2Fb%3Fx%3D1"
    assert request.headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("status", ["pending", "processing", "queued", "in_progress", "weird", "PENDING"])
def test_non_terminal_and_unknown_statuses_are_pending(status: str) -> None:
    state = parse_task({"status": status, "progress": 30, "data": []})
    assert (state.phase, state.raw_status, state.progress, state.file_urls) == (Phase.PENDING, status, 30, ())


def test_completed_carries_the_urls() -> None:
    data = [
        {"url": "https://cdn.image2.vip/a.png", "revised_prompt": "a cat", "status": "completed"},
        {"url": None},
        {"url": "ftp://nope"},
        "junk",
    ]
    state = parse_task({"status": "Completed", "progress": 100, "data": data, "error": None}, http_status=200)
    assert state == UpstreamState(
        raw_status="Completed",
        phase=Phase.SUCCEEDED,
        http_status=200,
        progress=100,
        file_urls=("https://cdn.image2.vip/a.png",),
    )


@pytest.mark.parametrize("data", [None, [], [{"url": None}], {"url": "https://x/y.png"}])
def test_completed_without_urls_is_upstream_unavailable(data: Any) -> None:
    err = raises(lambda: parse_task({"status": "completed", "data": data}, http_status=200))
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE and err.message == "completed task has no image URL"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("model overloaded", "model overloaded"),
        ({"message": "Generation failed"}, "Generation failed"),
        (
            {"message": "Image rejected", "type": "image_generation_user_error", "code": "moderation_blocked"},
            "Image rejected (image_generation_user_error moderation_blocked)",
        ),
        ({"code": "content_policy_violation"}, "content_policy_violation"),
        (None, None),
        ({}, None),
        ("x" * 900, "x" * 500),
    ],
)
def test_failed_keeps_the_upstream_message_and_tags(error: Any, message: str | None) -> None:
    state = parse_task({"status": "failed", "progress": 100, "data": [], "error": error})
    assert (state.phase, state.error_message) == (Phase.FAILED, message)


def test_error_is_ignored_unless_failed() -> None:
    assert parse_task({"status": "processing", "error": "transient"}).error_message is None


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(50, 50), (-5, 0), (250, 100), (33.7, 33), ("50", None), (True, None), (float("nan"), None), (None, None)],
)
def test_progress_is_clamped(progress: Any, expected: int | None) -> None:
    assert parse_task({"status": "processing", "progress": progress}).progress == expected


@pytest.mark.parametrize("body", [{}, {"status": ""}, {"status": 3}, {"error": {"message": "x"}}])
def test_status_without_status_is_upstream_unavailable(body: dict[str, Any]) -> None:
    err = raises(lambda: provider(Recorder(200, body)).status("t"))
    assert isinstance(err, RetryableError) and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE


# --- errors ---------------------------------------------------------------------------------------


def oai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


RATE = oai_error("Rate limit exceeded", "requests", "rate_limit_exceeded")
QUOTA = oai_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota")
BLOCKED = oai_error("Rejected.", "image_generation_user_error", "moderation_blocked")
BAD_KEY = oai_error("Incorrect API key provided", "invalid_request_error", "invalid_api_key")
NO_TASK = oai_error("Task not found", "invalid_request_error", "async_task_not_found")
ERROR_ROWS = [
    (400, oai_error("Invalid 'size'.", "invalid_request_error"), {}, ErrorKind.INVALID_REQUEST, None),
    (400, BLOCKED, {}, ErrorKind.CONTENT_REJECTED, None),
    (401, BAD_KEY, {}, ErrorKind.AUTH_FAILED, None),
    (402, oai_error("Insufficient credits", "insufficient_credits"), {}, ErrorKind.INSUFFICIENT_CREDITS, None),
    (403, oai_error("Forbidden", "request_forbidden"), {}, ErrorKind.AUTH_FAILED, None),
    (404, NO_TASK, {}, ErrorKind.INVALID_REQUEST, None),  # on status calls: retryable (see below)
    (429, RATE, {"retry-after-ms": "250", "retry-after": "1"}, ErrorKind.RATE_LIMITED, 0.25),
    (429, RATE, {}, ErrorKind.RATE_LIMITED, None),
    (429, QUOTA, {}, ErrorKind.INSUFFICIENT_CREDITS, None),
    (500, oai_error("server error", "server_error"), {}, ErrorKind.UPSTREAM_UNAVAILABLE, None),
    (503, oai_error("overloaded", "server_error"), {"retry-after": "3"}, ErrorKind.UPSTREAM_UNAVAILABLE, 3.0),
]


@pytest.mark.parametrize("endpoint", ["submit", "status"])
@pytest.mark.parametrize(("status", "body", "headers", "kind", "retry_after"), ERROR_ROWS)
def test_error_mapping(
    endpoint: str, status: int, body: Any, headers: dict[str, str], kind: ErrorKind, retry_after: float | None
) -> None:
    p = provider(Recorder(status, body, headers))
    err = raises(lambda: p.submit(REQ) if endpoint == "submit" else p.status("t"))
    if status == 404 and endpoint == "status":
        kind = ErrorKind.UPSTREAM_UNAVAILABLE  # a task we created, not found: spend a poll error, not the job
    assert (err.kind, err.http_status, err.retry_after) == (kind, status, retry_after)
    assert err.message == body["error"]["message"]


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.RemoteProtocolError("eof")],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_are_upstream_unavailable(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    for call in (lambda: provider(handler).submit(REQ), lambda: provider(handler).status("t")):
        err = raises(call)
        assert isinstance(err, RetryableError) and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE and err.__cause__ is exc


def test_html_200_is_upstream_unavailable() -> None:
    err = raises(lambda: provider(lambda r: httpx.Response(200, text="<html>")).status("t"))
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE


# --- against the simulator ------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def sim(clock: FakeClock) -> TestClient:
    return TestClient(create_app(SimSettings(duration_s=10), clock=clock))


def sim_provider(sim: TestClient, key: str = "i2-sim") -> Image2Provider:
    return Image2Provider(sim, base_url="http://testserver/image2/api/v1", api_key=key)


def test_simulator_lifecycle_and_file(sim: TestClient, clock: FakeClock) -> None:
    p = sim_provider(sim)
    submitted = p.submit(ImageRequest(provider="image2", prompt="a fox", image_urls=["https://a.example/r.png"]))
    assert submitted.status == "pending" and submitted.task_id and submitted.task_id.startswith("img2-")
    tid = submitted.task_id
    first = p.status(tid)
    assert (first.raw_status, first.phase, first.progress) == ("pending", Phase.PENDING, 0)
    clock.t += 5
    middle = p.status(tid)
    assert (middle.raw_status, middle.phase, middle.progress) == ("processing", Phase.PENDING, 49)
    assert sim.get(f"/files/{tid}.png").status_code == 404
    clock.t += 5
    done = p.status(tid)
    assert (done.phase, done.file_urls) == (Phase.SUCCEEDED, (f"http://testserver/files/{tid}.png",))
    image = sim.get(done.file_urls[0])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    records = sim.get("/_sim/requests", params={"task_id": tid}).json()
    assert [r["endpoint"] for r in records] == ["submit", "status", "status", "file", "status", "file"]
    assert {r["provider"] for r in records if r["endpoint"] != "file"} == {"image2"}


@pytest.mark.parametrize(
    ("directive", "safety"), [("statusfail", False), ("safetyfail", True), ("image2:safetyfail", True)]
)
def test_simulator_failed_outcomes(sim: TestClient, directive: str, safety: bool) -> None:
    p = sim_provider(sim)
    tid = p.submit(ImageRequest(provider="image2", prompt=f"x [[instant]] [[{directive}]]")).task_id
    assert tid is not None
    state = p.status(tid)
    assert state.phase is Phase.FAILED and state.error_message
    assert is_safety_message(state.error_message) is safety


def test_simulator_never_until_forced(sim: TestClient, clock: FakeClock) -> None:
    p = sim_provider(sim)
    tid = p.submit(ImageRequest(provider="image2", prompt="x [[never]]")).task_id
    assert tid is not None
    clock.t += 3600
    assert (p.status(tid).phase, p.status(tid).progress) == (Phase.PENDING, 50)
    assert sim.post(f"/_sim/tasks/{tid}/finish").status_code == 200
    assert p.status(tid).phase is Phase.SUCCEEDED


@pytest.mark.parametrize(
    ("directive", "kind", "cls"),
    [
        ("[[400]]", ErrorKind.INVALID_REQUEST, FinalError),
        ("[[401]]", ErrorKind.AUTH_FAILED, AccountError),
        ("[[402]]", ErrorKind.INSUFFICIENT_CREDITS, AccountError),
        ("[[429]]", ErrorKind.RATE_LIMITED, RetryableError),
        ("[[quota]]", ErrorKind.INSUFFICIENT_CREDITS, AccountError),
        ("[[moderation]]", ErrorKind.CONTENT_REJECTED, FinalError),
        ("[[502]]", ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError),
        ("[[malformed]]", ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError),
    ],
)
def test_simulator_submit_faults(sim: TestClient, directive: str, kind: ErrorKind, cls: type) -> None:
    err = raises(lambda: sim_provider(sim).submit(ImageRequest(provider="image2", prompt=f"x {directive}")))
    # A 502 or an unreadable 2xx may hide a created task; an answer such as a 503 does not.
    maybe = directive in ("[[502]]", "[[malformed]]")
    assert err.kind is kind and type(err) is (MaybeSentError if maybe else cls) and err.maybe_sent is maybe


def test_simulator_poll_faults_then_result(sim: TestClient) -> None:
    p = sim_provider(sim)
    tid = p.submit(
        ImageRequest(provider="image2", prompt="x [[instant]] [[poll503x1]] [[poll429x1]] [[pollmalformedx1]]")
    )
    assert tid.task_id is not None
    kinds = [raises(lambda: p.status(str(tid.task_id))).kind for _ in range(3)]
    assert kinds == [ErrorKind.UPSTREAM_UNAVAILABLE, ErrorKind.RATE_LIMITED, ErrorKind.UPSTREAM_UNAVAILABLE]
    assert p.status(tid.task_id).phase is Phase.SUCCEEDED


def test_simulator_auth_and_unknown_task(sim: TestClient) -> None:
    assert raises(lambda: sim_provider(sim, key="invalid").submit(REQ)).kind is ErrorKind.AUTH_FAILED
    err = raises(lambda: sim_provider(sim).status("img2-0-missing"))
    assert (err.kind, err.http_status) == (ErrorKind.UPSTREAM_UNAVAILABLE, 404)  # the poll budget ends it
