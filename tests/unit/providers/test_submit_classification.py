"""Classification at the httpx boundary for the submit hardening: whether a failed submit may have reached
the upstream, the Idempotency-Key header, providers without a key, and the answers that are easy to
misread (billing 400, status 404, 409, ``x-should-retry``, APIDot's other labels, Retry-After no-hints)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegen.errors import AccountError, ErrorKind, MaybeSentError, ProviderError, RetryableError
from imagegen.net.urls import FetchPolicy
from imagegen.providers.apidot import APIDotProvider, parse_status
from imagegen.providers.base import Phase
from imagegen.providers.http import classify_http, error_from_response, map_transport_errors
from imagegen.providers.image2 import Image2Provider
from imagegen.providers.openai import OpenAIProvider
from imagegen.request import ImageRequest
from imagegen.timing.backoff import parse_retry_after
from tests.support import recorder

Handler = Callable[[httpx.Request], httpx.Response]
REQ = ImageRequest(prompt="a cat", quality="low")
I2_REQ = ImageRequest(provider="image2", prompt="a cat")
OA_REQ = ImageRequest(provider="openai", prompt="a cat", quality="low")
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class Recorder(recorder.Recorder):
    """Keeps every request and answers what each endpoint answers when all goes well (unless told)."""

    def default_body(self, request: httpx.Request) -> Any:
        if request.url.path.endswith("/submit"):
            return {"code": 200, "data": {"task_id": "t-1", "status": "not_started"}}
        if request.url.path.endswith("/generations"):
            return {"task_id": "img2-1", "status": "pending"}
        return {"code": 200, "data": {"status": "running"}, "status": "processing"}


def client(handler: Handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def apidot(handler: Handler, key: str = "k") -> APIDotProvider:
    return APIDotProvider(client(handler), base_url="https://apidot.test", api_key=key)


def image2(handler: Handler, key: str = "k") -> Image2Provider:
    return Image2Provider(client(handler), base_url="https://image2.test/api/v1", api_key=key)


def openai(handler: Handler, key: str = "k") -> OpenAIProvider:
    return OpenAIProvider(client(handler), base_url="https://openai.test/v1", api_key=key, fetch_policy=FetchPolicy())


def raised(call: Callable[[], object]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call()
    return info.value


# --- may the request have reached the upstream? ---------------------------------------------------

NOTHING_SENT = [
    httpx.ConnectError("refused"),
    httpx.ConnectError("[Errno -2] Name or service not known"),  # how httpx reports a DNS failure
    httpx.ConnectTimeout("connect"),
    httpx.PoolTimeout("pool"),
    httpx.UnsupportedProtocol("ftp"),
    httpx.LocalProtocolError("Illegal header value b'Bearer '"),
    httpx.ProxyError("proxy refused"),
]
MAYBE_SENT = [
    httpx.ReadTimeout("slow"),
    httpx.WriteTimeout("slow write"),
    httpx.ReadError("reset by peer"),
    httpx.WriteError("broken pipe"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.CloseError("close"),
    httpx.DecodingError("bad gzip"),
]


@pytest.mark.parametrize("exc", NOTHING_SENT, ids=lambda e: type(e).__name__)
def test_nothing_sent_transport_errors_are_plain_upstream_unavailable(exc: Exception) -> None:
    with pytest.raises(ProviderError) as info, map_transport_errors():
        raise exc
    err = info.value
    assert type(err) is RetryableError and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert not err.maybe_sent


@pytest.mark.parametrize("exc", MAYBE_SENT, ids=lambda e: type(e).__name__)
def test_errors_after_sending_may_have_reached_the_upstream(exc: Exception) -> None:
    with pytest.raises(ProviderError) as info, map_transport_errors():
        raise exc
    err = info.value
    assert isinstance(err, MaybeSentError) and isinstance(err, RetryableError)
    assert err.maybe_sent and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE and err.retryable
    assert err.__cause__ is exc


@pytest.mark.parametrize(("status", "maybe"), [(500, False), (503, False), (502, True), (504, True)])
def test_gateway_errors_may_have_been_processed(status: int, maybe: bool) -> None:
    err = raised(lambda: apidot(lambda r: httpx.Response(status, text="<html>gateway</html>")).submit(REQ))
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE and err.http_status == status
    assert err.maybe_sent is maybe


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>ok</html>"),
        httpx.Response(200, json={"code": 200, "data": {"status": "not_started"}}),
        httpx.Response(201, json={"code": 0, "data": {"task_id": ""}}),
        httpx.Response(200, json=["task"]),
    ],
)
def test_a_2xx_without_a_task_id_may_have_created_one(answer: httpx.Response) -> None:
    err = raised(lambda: apidot(lambda r: answer).submit(REQ))
    assert err.maybe_sent and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE


def test_image2_2xx_without_task_id_may_have_created_one() -> None:
    err = raised(lambda: image2(lambda r: httpx.Response(200, json={"status": "pending"})).submit(I2_REQ))
    assert err.maybe_sent


def test_an_error_code_inside_a_2xx_is_an_answer() -> None:
    body = {"code": 500, "error": {"message": "internal"}}
    err = raised(lambda: apidot(lambda r: httpx.Response(200, json=body)).submit(REQ))
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE and not err.maybe_sent


def test_openai_200_without_images_may_have_been_paid_but_an_error_body_is_an_answer() -> None:
    empty = raised(lambda: openai(lambda r: httpx.Response(200, json={"created": 1})).submit(OA_REQ))
    assert empty.maybe_sent
    relay = {"error": {"message": "internal", "type": "server_error"}}
    answered = raised(lambda: openai(lambda r: httpx.Response(200, json=relay)).submit(OA_REQ))
    assert not answered.maybe_sent and answered.kind is ErrorKind.UPSTREAM_UNAVAILABLE


# --- Idempotency-Key ------------------------------------------------------------------------------


def test_apidot_and_image2_submits_carry_the_idempotency_key() -> None:
    rec = Recorder()
    apidot(rec).submit(REQ, idempotency_key="job-1")
    apidot(rec).submit(REQ, idempotency_key="job-1")
    image2(rec).submit(I2_REQ, idempotency_key="job-2")
    assert [r.headers.get("Idempotency-Key") for r in rec.requests] == ["job-1", "job-1", "job-2"]


def test_status_calls_and_keyless_submits_carry_no_idempotency_key() -> None:
    rec = Recorder()
    apidot(rec).submit(REQ)
    apidot(rec).status("t-1")
    image2(rec).status("img2-1")
    assert all("Idempotency-Key" not in r.headers for r in rec.requests)


def test_openai_accepts_the_keyword() -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 20).decode()
    rec = Recorder(lambda r: httpx.Response(200, json={"data": [{"b64_json": png}]}))
    assert openai(rec).submit(OA_REQ, idempotency_key="job-3").images


# --- no API key configured ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "request_", "variable"),
    [(apidot, REQ, "APIDOT_API_KEY"), (image2, I2_REQ, "IMAGE2_API_KEY"), (openai, OA_REQ, "OPENAI_API_KEY")],
)
def test_a_provider_without_a_key_never_calls_upstream(make: Any, request_: ImageRequest, variable: str) -> None:
    rec = Recorder()
    provider = make(rec, key="")
    err = raised(lambda: provider.submit(request_, idempotency_key="job"))
    assert isinstance(err, AccountError)
    assert (err.kind, err.message, err.http_status) == (ErrorKind.AUTH_FAILED, f"{variable} is not set", None)
    if not provider.synchronous:
        assert raised(lambda: provider.status("t-1")).kind is ErrorKind.AUTH_FAILED
    assert rec.requests == []


def test_a_blank_key_counts_as_unset() -> None:
    rec = Recorder()
    assert raised(lambda: apidot(rec, key="   ").submit(REQ)).message == "APIDOT_API_KEY is not set"
    assert rec.requests == []


# --- classification -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "Billing hard limit has been reached", "type": "invalid_request_error",
                   "code": "billing_hard_limit_reached"}},
        {"error": {"message": "x", "type": "billing_hard_limit_reached"}},
    ],
)  # fmt: skip
def test_openai_billing_hard_limit_is_insufficient_credits(body: Any) -> None:
    assert classify_http(400, body) is ErrorKind.INSUFFICIENT_CREDITS
    err = raised(lambda: openai(lambda r: httpx.Response(400, json=body)).submit(OA_REQ))
    assert isinstance(err, AccountError) and err.kind is ErrorKind.INSUFFICIENT_CREDITS


def test_404_on_a_status_call_is_retryable_but_on_submit_it_is_invalid() -> None:
    assert classify_http(404, {"detail": "task not found"}, status_call=True) is ErrorKind.UPSTREAM_UNAVAILABLE
    assert classify_http(404, {"detail": "Not Found"}) is ErrorKind.INVALID_REQUEST
    not_found = lambda r: httpx.Response(404, json={"code": 404, "error": {"message": "task not found"}})  # noqa: E731
    assert raised(lambda: apidot(not_found).status("t-1")).kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert raised(lambda: apidot(not_found).submit(REQ)).kind is ErrorKind.INVALID_REQUEST
    i2_missing = {"error": {"message": "Task 'x' not found.", "code": "async_task_not_found"}}
    assert raised(lambda: image2(lambda r: httpx.Response(404, json=i2_missing)).status("x")).retryable
    # An in-body 404 on a status call too (APIDot may answer HTTP 200 with code 404).
    in_body = lambda r: httpx.Response(200, json={"code": 404, "error": {"message": "task not found"}})  # noqa: E731
    assert raised(lambda: apidot(in_body).status("t-1")).kind is ErrorKind.UPSTREAM_UNAVAILABLE


def test_409_is_retryable() -> None:
    assert classify_http(409, None) is ErrorKind.UPSTREAM_UNAVAILABLE
    err = raised(lambda: apidot(lambda r: httpx.Response(409, json={"detail": "conflict"})).submit(REQ))
    assert err.retryable and not err.maybe_sent


def _answer(status: int, should_retry: str | None, body: Any = None) -> httpx.Response:
    headers = {"x-should-retry": should_retry} if should_retry is not None else {}
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("POST", "https://x"))


@pytest.mark.parametrize(
    ("status", "header", "kind"),
    [
        (400, "true", ErrorKind.UPSTREAM_UNAVAILABLE),
        (404, "true", ErrorKind.UPSTREAM_UNAVAILABLE),
        (429, "true", ErrorKind.RATE_LIMITED),
        (400, "false", ErrorKind.INVALID_REQUEST),
        (400, None, ErrorKind.INVALID_REQUEST),
        # The OpenAI SDK's "false" stops its own immediate retries; a job retried later with backoff and a
        # budget is another matter, so a 5xx stays retryable.
        (500, "false", ErrorKind.UPSTREAM_UNAVAILABLE),
        (429, "false", ErrorKind.RATE_LIMITED),
        # What only the account can fix is never "retry": the key is paused, a person acts.
        (401, "true", ErrorKind.AUTH_FAILED),
        (402, "true", ErrorKind.INSUFFICIENT_CREDITS),
    ],
)
def test_x_should_retry(status: int, header: str | None, kind: ErrorKind) -> None:
    assert error_from_response(_answer(status, header), None).kind is kind


def test_x_should_retry_does_not_unblock_moderation() -> None:
    body = {"error": {"message": "blocked", "code": "moderation_blocked"}}
    assert error_from_response(_answer(400, "true"), body).kind is ErrorKind.CONTENT_REJECTED


FILES = [{"file_url": "https://cdn.example/a.png", "file_type": "image"}]


@pytest.mark.parametrize("label", ["finished", "success", "succeeded", "completed", "Completed", "SUCCESS"])
def test_apidot_success_labels(label: str) -> None:
    state = parse_status({"code": 200, "data": {"status": label, "files": FILES}})
    assert state.phase is Phase.SUCCEEDED and state.raw_status == label


@pytest.mark.parametrize("label", ["failed", "error", "canceled", "cancelled", "CANCELLED"])
def test_apidot_failure_labels(label: str) -> None:
    state = parse_status({"code": 200, "data": {"status": label, "error_message": "stopped"}})
    assert state.phase is Phase.FAILED and state.error_message == "stopped"


def test_apidot_success_label_without_files_is_not_a_success() -> None:
    with pytest.raises(RetryableError):
        parse_status({"code": 200, "data": {"status": "completed", "files": []}})


# --- Retry-After that is no hint ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "0"},
        {"Retry-After": "0.0"},
        {"Retry-After": "-5"},
        {"Retry-After": "-0.001"},
        {"Retry-After": format_datetime(NOW - timedelta(seconds=90), usegmt=True)},
        {"Retry-After": format_datetime(NOW, usegmt=True)},
        {"retry-after-ms": "0"},
        {"retry-after-ms": "-100"},
    ],
)
def test_zero_negative_or_past_retry_after_is_no_hint(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now=NOW) is None


def test_a_zero_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "0", "Retry-After": "3"}, now=NOW) == 3.0


@given(st.floats(max_value=0.0, allow_nan=False))
def test_no_non_positive_value_is_a_hint(seconds: float) -> None:
    assert parse_retry_after({"Retry-After": repr(seconds)}, now=NOW) is None


def test_a_zero_retry_after_on_a_429_leaves_the_error_without_a_hint() -> None:
    err = error_from_response(_answer(429, None), None)
    assert err.retry_after is None
    err = error_from_response(
        httpx.Response(429, headers={"Retry-After": "0"}, request=httpx.Request("GET", "https://x")), None
    )
    assert err.kind is ErrorKind.RATE_LIMITED and err.retry_after is None
