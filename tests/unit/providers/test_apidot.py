"""APIDot client: status parsing, in-body codes, HTTP error mapping and the submit body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.errors import AccountError, ErrorKind, FinalError, ProviderError, RetryableError
from imagegen.providers.apidot import APIDotProvider, build_input, parse_status
from imagegen.providers.base import Phase, SubmitResult, UpstreamState
from imagegen.request import ImageRequest
from tests.support import recorder

BASE = "https://api.apidot.test/"
KEY = "sk-test-key"
IMG = "https://example.com/ref.png"

Handler = Callable[[httpx.Request], httpx.Response]


def provider(handler: Handler) -> APIDotProvider:
    return APIDotProvider(httpx.Client(transport=httpx.MockTransport(handler)), base_url=BASE, api_key=KEY)


def answer(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handler


def submit_ok(status: str = "not_started", code: int = 200) -> dict[str, Any]:
    return {
        "code": code,
        "data": {"task_id": "task-123", "status": status, "created_time": "2024-01-01T00:00:00Z"},
    }


def status_body(**data: Any) -> dict[str, Any]:
    return {"code": 200, "data": {"task_id": "task-123", **data}}


REQ = ImageRequest(prompt="a cat", quality="low", size="1:1", resolution="1K")


def submit_error(handler: Handler) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider(handler).submit(REQ)
    return info.value


def status_error(handler: Handler) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider(handler).status("task-123")
    return info.value


# --- parse_status ---------------------------------------------------------------------------------


def test_parse_status_files_shape() -> None:
    state = parse_status(
        status_body(
            status="finished",
            progress=100,
            files=[{"file_url": "https://cdn.apidot.ai/a.png", "file_type": "image/png"}],
        )
    )
    assert state == UpstreamState(
        raw_status="finished",
        phase=Phase.SUCCEEDED,
        http_status=200,
        progress=100,
        file_urls=("https://cdn.apidot.ai/a.png",),
        error_message=None,
    )


def test_parse_status_output_files_shape() -> None:
    body = status_body(
        status="finished",
        output={
            "files": [
                {"file_url": "https://cdn.apidot.ai/a.png"},
                {"file_url": "https://cdn.apidot.ai/b.png"},
            ]
        },
    )
    state = parse_status(body, http_status=201)
    assert state.phase is Phase.SUCCEEDED
    assert state.file_urls == ("https://cdn.apidot.ai/a.png", "https://cdn.apidot.ai/b.png")
    assert state.http_status == 201


def test_parse_status_empty_files_falls_back_to_output_files() -> None:
    body = status_body(status="finished", files=[], output={"files": [{"file_url": "https://x/o.png"}]})
    assert parse_status(body).file_urls == ("https://x/o.png",)


def test_parse_status_skips_unusable_file_entries() -> None:
    files = [
        {"file_url": "https://ok/1.png"},
        {"file_url": "ftp://bad/2.png"},
        {"file_url": None},
        {"file_type": "image/png"},
        "https://not-a-dict/3.png",
        {"file_url": "https://" + "x" * 5000},
        {"file_url": "http://sim.local/4.png"},
    ]
    assert parse_status(status_body(status="finished", files=files)).file_urls == (
        "https://ok/1.png",
        "http://sim.local/4.png",
    )


@pytest.mark.parametrize("status", ["not_started", "running", "processing", "queued", "pending", "whatever", ""])
def test_non_terminal_and_unknown_statuses_are_pending(status: str) -> None:
    state = parse_status(status_body(status=status, progress=40))
    assert state.phase is Phase.PENDING
    assert state.raw_status == status
    assert state.progress == 40
    assert state.file_urls == ()


@pytest.mark.parametrize(("status", "phase"), [("FINISHED", Phase.SUCCEEDED), ("Failed", Phase.FAILED)])
def test_statuses_are_case_insensitive(status: str, phase: Phase) -> None:
    state = parse_status(status_body(status=status, files=[{"file_url": "https://x/1.png"}]))
    assert state.phase is phase
    assert state.raw_status == status  # the provider's raw value is kept as is


def test_failed_status_keeps_the_upstream_message() -> None:
    state = parse_status(status_body(status="failed", error_message="The model crashed"))
    assert state.phase is Phase.FAILED
    assert state.error_message == "The model crashed"
    assert parse_status(status_body(status="failed", error_message="m" * 900)).error_message == "m" * 500
    assert parse_status(status_body(status="failed", error_message=42)).error_message is None
    assert parse_status(status_body(status="failed")).error_message is None


def test_finished_without_files_is_upstream_unavailable() -> None:
    for extra in (
        {},
        {"files": []},
        {"files": None},
        {"output": {"files": []}},
        {"files": [{"file_url": 3}]},
    ):
        with pytest.raises(RetryableError) as info:
            parse_status(status_body(status="finished", **extra), http_status=200)
        assert info.value.kind is ErrorKind.UPSTREAM_UNAVAILABLE
        assert info.value.message == "finished task has no files"
        assert info.value.http_status == 200


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "finished",
        {},
        {"data": None},
        {"data": []},
        {"data": {}},
        {"data": {"status": 1}},
        {"data": {"status": None}},
    ],
)
def test_status_without_data_status_is_upstream_unavailable(data: Any) -> None:
    with pytest.raises(RetryableError) as info:
        parse_status(data, http_status=200)
    assert info.value.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert info.value.message == "status answer has no data.status"


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (0, 0),
        (55, 55),
        (100, 100),
        (150, 100),
        (-3, 0),
        (42.7, 42),
        (None, None),
        ("50", None),
        (True, None),
        (float("nan"), None),
        (float("inf"), 100),
    ],
)
def test_progress_is_clamped_to_0_100(progress: Any, expected: int | None) -> None:
    assert parse_status(status_body(status="running", progress=progress)).progress == expected


def test_raw_status_is_truncated() -> None:
    assert parse_status(status_body(status="r" * 100)).raw_status == "r" * 64


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
file_entries = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "file_url": st.sampled_from(["https://x/1.png", "http://y/2.png", "nope"]) | json_values,
            "file_type": json_values,
        },
    )
    | json_values,
    max_size=3,
)
status_like = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {
                "status": st.sampled_from(["finished", "failed", "running", "not_started", "processing"])
                | st.text(max_size=8)
            },
            optional={
                "progress": json_values,
                "files": file_entries | json_values,
                "output": st.fixed_dictionaries({}, optional={"files": file_entries | json_values}) | json_values,
                "error_message": json_values,
            },
        )
    },
    optional={"code": json_values},
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, status_like), st.integers(min_value=100, max_value=599))
def test_parse_status_is_total(data: Any, http_status: int) -> None:
    try:
        state = parse_status(data, http_status=http_status)
    except ProviderError as exc:
        assert exc.kind is ErrorKind.UPSTREAM_UNAVAILABLE
        assert exc.http_status == http_status
    else:
        assert isinstance(state, UpstreamState)
        assert isinstance(state.phase, Phase)
        assert state.http_status == http_status
        assert state.progress is None or 0 <= state.progress <= 100
        assert all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in state.file_urls)
        if state.phase is Phase.SUCCEEDED:
            assert state.file_urls


# --- submit: the request we send --------------------------------------------------------------------


class Recorder(recorder.Recorder):
    def default_body(self, request: httpx.Request) -> Any:
        return submit_ok()


def test_submit_sends_the_documented_body() -> None:
    rec = Recorder()
    result = provider(rec).submit(REQ, callback_url="https://me.example.com/webhooks/apidot?token=t")
    assert result == SubmitResult(task_id="task-123", status="not_started", http_status=200)
    request = rec.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.apidot.test/api/generate/submit"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert rec.body == {
        "model": "gpt-image-2",
        "callback_url": "https://me.example.com/webhooks/apidot?token=t",
        "input": {"prompt": "a cat", "quality": "low", "size": "1:1", "resolution": "1K"},
    }


def test_submit_body_has_no_n_and_no_absent_fields() -> None:
    rec = Recorder()
    provider(rec).submit(ImageRequest(prompt="just a prompt"))
    assert rec.body == {"model": "gpt-image-2", "input": {"prompt": "just a prompt"}}
    assert "n" not in rec.body and "n" not in rec.body["input"]
    assert "callback_url" not in rec.body


def test_submit_includes_image_urls_only_when_present() -> None:
    rec = Recorder()
    provider(rec).submit(ImageRequest(prompt="edit", model="gpt-image-2-edit", image_urls=[IMG]))
    assert rec.body == {"model": "gpt-image-2-edit", "input": {"prompt": "edit", "image_urls": [IMG]}}
    provider(rec).submit(ImageRequest(prompt="gen", model="nano-banana", image_urls=[]))
    assert "image_urls" not in rec.body["input"]


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        ImageRequest,
        prompt=st.text(
            st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30
        ).filter(str.strip),
        model=st.sampled_from(["gpt-image-2", "nano-banana"]),
        quality=st.none() | st.sampled_from(["low", "medium", "high"]),
        size=st.none() | st.sampled_from(["auto", "1:1", "16:9"]),
        resolution=st.none() | st.sampled_from(["1K", "2K", "4K"]),
    )
)
def test_build_input_never_contains_n(req: ImageRequest) -> None:
    fields = build_input(req)
    assert "n" not in fields
    assert fields["prompt"] == req.prompt
    assert set(fields) == {"prompt"} | {k for k in ("quality", "size", "resolution") if getattr(req, k) is not None}


def test_status_calls_the_status_endpoint_with_an_escaped_task_id() -> None:
    rec = Recorder(httpx.Response(200, json=status_body(status="running", progress=10)))
    state = provider(rec).status("abc/../def?x=1")
    assert state.phase is Phase.PENDING and state.progress == 10
    request = rec.requests[0]
    assert request.method == "GET"
    assert request.url.raw_path == b"/api/generate/status/abc%2F..%2Fdef%3Fx%3D1"
    assert request.headers["Authorization"] == f"Bearer {KEY}"


# --- in-body codes --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 200])
def test_codes_0_and_200_are_success(code: int) -> None:
    assert provider(answer(200, submit_ok(code=code))).submit(REQ).task_id == "task-123"
    state = provider(answer(200, {"code": code, "data": {"status": "running"}})).status("t")
    assert state.phase is Phase.PENDING


def test_missing_code_is_success() -> None:
    assert provider(answer(200, {"data": {"task_id": "t-1"}})).submit(REQ).task_id == "t-1"


@pytest.mark.parametrize(
    ("code", "kind", "cls"),
    [
        (500, ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError),
        (503, ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError),
        (400, ErrorKind.INVALID_REQUEST, FinalError),
        (401, ErrorKind.AUTH_FAILED, AccountError),
        (402, ErrorKind.INSUFFICIENT_CREDITS, AccountError),
        (429, ErrorKind.RATE_LIMITED, RetryableError),
        (1, ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError),  # not an HTTP status: treated as 500
        (70000, ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError),
        ("oops", ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError),
        (True, ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError),
    ],
)
def test_error_codes_inside_http_200(code: Any, kind: ErrorKind, cls: type) -> None:
    body = {"code": code, "error": {"message": "upstream says no", "type": "x"}}
    for call in (submit_error, status_error):
        err = call(answer(200, body))
        assert type(err) is cls
        assert err.kind is kind
        assert err.http_status == 200
        assert err.message == "upstream says no"


def test_moderation_code_inside_http_200() -> None:
    body = {"code": 400, "error": {"message": "Prompt flagged by moderation", "type": "invalid_request"}}
    assert submit_error(answer(200, body)).kind is ErrorKind.CONTENT_REJECTED


def test_rate_limit_code_inside_http_200_honours_retry_after() -> None:
    err = submit_error(answer(200, {"code": 429, "error": {"message": "slow"}}, {"Retry-After": "4"}))
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after == 4.0


# --- HTTP errors ----------------------------------------------------------------------------------


def test_http_402_without_code_is_insufficient_credits() -> None:
    err = submit_error(answer(402, {"error": {"message": "Insufficient credits", "type": "insufficient_credits"}}))
    assert isinstance(err, AccountError)
    assert err.kind is ErrorKind.INSUFFICIENT_CREDITS
    assert err.http_status == 402
    assert err.message == "Insufficient credits"


@pytest.mark.parametrize("status", [401, 403])
def test_http_401_403_are_auth_failed(status: int) -> None:
    err = submit_error(
        answer(status, {"code": status, "error": {"message": "bad key", "type": "authentication_error"}})
    )
    assert isinstance(err, AccountError)
    assert err.kind is ErrorKind.AUTH_FAILED
    assert err.http_status == status


def test_http_429_with_retry_after() -> None:
    err = submit_error(
        answer(
            429,
            {"code": 429, "error": {"message": "Too many", "type": "rate_limited"}},
            {"Retry-After": "12"},
        )
    )
    assert isinstance(err, RetryableError)
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after == 12.0
    assert err.http_status == 429


def test_http_429_without_retry_after() -> None:
    err = status_error(answer(429, {"code": 429, "error": {"message": "Too many"}}))
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_is_upstream_unavailable(status: int) -> None:
    err = submit_error(answer(status, {"code": status, "error": {"message": "oops"}}))
    assert isinstance(err, RetryableError)
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert err.http_status == status


def test_http_5xx_with_html_body() -> None:
    err = status_error(lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert err.message == "<html>Bad Gateway</html>"
    assert err.http_status == 502


@pytest.mark.parametrize(
    ("status", "detail", "kind"),
    [
        (400, "Invalid size", ErrorKind.INVALID_REQUEST),
        (422, [{"loc": ["body", "input", "prompt"], "msg": "field required"}], ErrorKind.INVALID_REQUEST),
        (401, "Not authenticated", ErrorKind.AUTH_FAILED),
        (404, "Not Found", ErrorKind.INVALID_REQUEST),
    ],
)
def test_detail_bodies(status: int, detail: Any, kind: ErrorKind) -> None:
    err = submit_error(answer(status, {"detail": detail}))
    assert err.kind is kind
    assert err.message == (detail if isinstance(detail, str) else str(detail))


def test_non_json_200_is_upstream_unavailable() -> None:
    for call in (submit_error, status_error):
        err = call(lambda r: httpx.Response(200, text="<html>maintenance</html>"))
        assert isinstance(err, RetryableError)
        assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
        assert err.message == "malformed 200 response (not a JSON object)"
        assert err.http_status == 200


@pytest.mark.parametrize("body", [[1, 2], "a string", 3, None])
def test_json_200_that_is_not_an_object_is_upstream_unavailable(body: Any) -> None:
    err = status_error(lambda r: httpx.Response(200, content=json.dumps(body).encode()))
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE


def test_invalid_utf8_200_is_upstream_unavailable() -> None:
    err = status_error(
        lambda r: httpx.Response(200, content=b"\xff\xfe{]", headers={"content-type": "application/json"})
    )
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE


@pytest.mark.parametrize(
    "data",
    [
        {"code": 200},
        {"code": 200, "data": None},
        {"code": 200, "data": {}},
        {"code": 200, "data": {"task_id": ""}},
        {"code": 200, "data": {"task_id": 123}},
        {"code": 200, "data": {"task_id": "t" * 201}},
        {"code": 200, "data": ["task_id"]},
    ],
)
def test_submit_answer_without_task_id_is_upstream_unavailable(data: dict[str, Any]) -> None:
    err = submit_error(answer(200, data))
    assert isinstance(err, RetryableError)
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert err.message == "submit answer has no task_id"
    assert err.http_status == 200


def test_submit_status_is_optional_and_clipped() -> None:
    assert provider(answer(200, {"code": 0, "data": {"task_id": "t"}})).submit(REQ).status is None
    long = provider(answer(200, {"code": 0, "data": {"task_id": "t", "status": "s" * 600}})).submit(REQ)
    assert long.status == "s" * 500


def test_finished_status_without_files_via_the_client() -> None:
    err = status_error(answer(200, status_body(status="finished", files=[])))
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE


def test_failed_status_via_the_client() -> None:
    state = provider(answer(200, status_body(status="failed", error_message="boom"))).status("t")
    assert (state.phase, state.error_message, state.raw_status) == (Phase.FAILED, "boom", "failed")


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_become_upstream_unavailable(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    for call in (submit_error, status_error):
        err = call(handler)
        assert isinstance(err, RetryableError)
        assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
        assert err.http_status is None
        assert err.__cause__ is exc
