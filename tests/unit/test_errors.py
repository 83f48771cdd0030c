"""Error kinds, HTTP classification and the httpx → ProviderError boundary (README, 'How a job flows')."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.errors import (
    ACCOUNT_KINDS,
    RETRYABLE_KINDS,
    AccountError,
    ErrorKind,
    FinalError,
    ImagegenError,
    MaybeSentError,
    ProviderError,
    RetryableError,
    provider_error,
)
from imagegen.providers.http import (
    classify_http,
    error_from_response,
    error_message_from_body,
    is_safety_message,
    map_transport_errors,
)

SPEC_KINDS = {
    "invalid_request",
    "content_rejected",
    "auth_failed",
    "insufficient_credits",
    "submit_outcome_unknown",
    "rate_limited",
    "upstream_unavailable",
    "generation_failed",
    "result_unavailable",
    "deadline_exceeded",
    "canceled",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)


# --- ErrorKind and the exception tree -------------------------------------------------------------


def test_error_kinds_are_exactly_the_spec_strings() -> None:
    assert {k.value for k in ErrorKind} == SPEC_KINDS
    assert ErrorKind.RATE_LIMITED == "rate_limited"  # StrEnum: compares equal to its stable string
    assert str(ErrorKind.UPSTREAM_UNAVAILABLE) == "upstream_unavailable"


def test_retryable_and_account_kind_sets() -> None:
    assert {ErrorKind.RATE_LIMITED, ErrorKind.UPSTREAM_UNAVAILABLE} == RETRYABLE_KINDS
    assert {ErrorKind.AUTH_FAILED, ErrorKind.INSUFFICIENT_CREDITS} == ACCOUNT_KINDS


@pytest.mark.parametrize(
    ("kind", "cls", "retryable"),
    [
        (ErrorKind.RATE_LIMITED, RetryableError, True),
        (ErrorKind.UPSTREAM_UNAVAILABLE, RetryableError, True),
        (ErrorKind.AUTH_FAILED, AccountError, False),
        (ErrorKind.INSUFFICIENT_CREDITS, AccountError, False),
        (ErrorKind.INVALID_REQUEST, FinalError, False),
        (ErrorKind.CONTENT_REJECTED, FinalError, False),
        (ErrorKind.GENERATION_FAILED, FinalError, False),
        (ErrorKind.SUBMIT_OUTCOME_UNKNOWN, FinalError, False),
        (ErrorKind.DEADLINE_EXCEEDED, FinalError, False),
        (ErrorKind.CANCELED, FinalError, False),
    ],
)
def test_provider_error_picks_the_subclass(kind: ErrorKind, cls: type, retryable: bool) -> None:
    err = provider_error(kind, "boom", http_status=418, retry_after=2.5)
    assert type(err) is cls
    assert isinstance(err, ProviderError) and isinstance(err, ImagegenError)
    assert err.kind is kind
    assert err.retryable is retryable
    assert err.message == "boom" and str(err) == "boom"
    assert err.http_status == 418
    assert err.retry_after == 2.5
    assert repr(err) == f"{cls.__name__}({kind.value!r}, 'boom', http_status=418)"


def test_account_error_is_a_final_error() -> None:
    assert issubclass(AccountError, FinalError)
    assert not issubclass(RetryableError, FinalError)


# --- is_safety_message ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, False),
        ("", False),
        ("bad size", False),
        ("Invalid value for 'size'", False),
        ("moderation_blocked", True),
        ("Your request was rejected by the safety system", True),
        ("content_policy_violation", True),
        ("violates our Content Policy", True),
        ("content_filter triggered", True),
        ("NSFW content detected", True),
        ("MODERATION", True),
    ],
)
def test_is_safety_message(text: str | None, expected: bool) -> None:
    assert is_safety_message(text) is expected


# --- error_message_from_body ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"code": 400, "error": {"message": "bad size", "type": "invalid_request"}},
            ("bad size", "invalid_request"),
        ),
        ({"error": {"message": "blocked", "code": "moderation_blocked"}}, ("blocked", "moderation_blocked")),
        ({"error": {"message": None, "type": None}}, ("", "")),
        ({"error": {"message": 42}}, ("42", "")),
        ({"error": "plain string error"}, ("plain string error", "")),
        ({"detail": "Not authenticated"}, ("Not authenticated", "")),
        ({"detail": [{"loc": ["body", "x"]}]}, ("[{'loc': ['body', 'x']}]", "")),
        ({"message": "top-level message"}, ("top-level message", "")),
        ({"message": None}, ("", "")),
        ({"something": "else"}, ("", "")),
        ("upstream text body", ("upstream text body", "")),
        (None, ("", "")),
        (123, ("", "")),
        ([{"error": "x"}], ("", "")),
    ],
)
def test_error_message_from_body(body: object, expected: tuple[str, str]) -> None:
    assert error_message_from_body(body) == expected


def test_error_message_is_clipped_to_500_chars() -> None:
    message, err_type = error_message_from_body({"error": {"message": "m" * 10_000, "type": "t" * 900}})
    assert message == "m" * 500
    assert err_type == "t" * 500
    assert error_message_from_body("x" * 501) == ("x" * 500, "")


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_error_message_from_body_never_raises(body: object) -> None:
    message, err_type = error_message_from_body(body)
    assert isinstance(message, str) and isinstance(err_type, str)
    assert len(message) <= 500 and len(err_type) <= 500


# --- classify_http --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"error": {"message": "invalid size", "type": "invalid_request"}}, ErrorKind.INVALID_REQUEST),
        (422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]}, ErrorKind.INVALID_REQUEST),
        (400, None, ErrorKind.INVALID_REQUEST),
        (400, {"error": {"message": "x", "type": "moderation_blocked"}}, ErrorKind.CONTENT_REJECTED),
        (400, {"error": {"message": "moderation_blocked", "type": "x"}}, ErrorKind.CONTENT_REJECTED),
        (
            400,
            {
                "error": {
                    "message": "Your request was rejected by the safety system.",
                    "type": "image_generation_user_error",
                }
            },
            ErrorKind.CONTENT_REJECTED,
        ),
        (400, {"error": {"message": "content_policy_violation"}}, ErrorKind.CONTENT_REJECTED),
        (422, {"detail": "blocked by safety filter"}, ErrorKind.CONTENT_REJECTED),
        (401, {"detail": "Invalid API key"}, ErrorKind.AUTH_FAILED),
        (403, None, ErrorKind.AUTH_FAILED),
        (402, {"code": 402, "error": {"message": "not enough credits"}}, ErrorKind.INSUFFICIENT_CREDITS),
        (402, None, ErrorKind.INSUFFICIENT_CREDITS),
        (429, {"error": {"message": "slow down", "type": "rate_limit_exceeded"}}, ErrorKind.RATE_LIMITED),
        (429, None, ErrorKind.RATE_LIMITED),
        (
            429,
            {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota"}},
            ErrorKind.INSUFFICIENT_CREDITS,
        ),
        (429, {"error": {"message": "insufficient_quota"}}, ErrorKind.INSUFFICIENT_CREDITS),
        (408, None, ErrorKind.UPSTREAM_UNAVAILABLE),
        (500, {"error": {"message": "internal"}}, ErrorKind.UPSTREAM_UNAVAILABLE),
        (502, "<html>bad gateway</html>", ErrorKind.UPSTREAM_UNAVAILABLE),
        (503, None, ErrorKind.UPSTREAM_UNAVAILABLE),
        (504, None, ErrorKind.UPSTREAM_UNAVAILABLE),
        (599, None, ErrorKind.UPSTREAM_UNAVAILABLE),
        (200, {"unexpected": True}, ErrorKind.UPSTREAM_UNAVAILABLE),
        (204, None, ErrorKind.UPSTREAM_UNAVAILABLE),
        (404, {"detail": "Not Found"}, ErrorKind.INVALID_REQUEST),
        (405, None, ErrorKind.INVALID_REQUEST),
        (409, None, ErrorKind.UPSTREAM_UNAVAILABLE),  # a conflict (idempotency key in progress, a lock)
        (413, None, ErrorKind.INVALID_REQUEST),
        # A safety word on a non-400 status does not change its meaning.
        (500, {"error": {"message": "moderation service down"}}, ErrorKind.UPSTREAM_UNAVAILABLE),
        (401, {"error": {"message": "safety"}}, ErrorKind.AUTH_FAILED),
    ],
)
def test_classify_http(status: int, body: object, kind: ErrorKind) -> None:
    assert classify_http(status, body) is kind


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            {
                "error": {
                    "message": "Request rejected.",
                    "type": "image_generation_user_error",
                    "code": "moderation_blocked",
                }
            },
            ErrorKind.CONTENT_REJECTED,
        ),
        (
            429,
            {
                "error": {
                    "message": "Please check your plan.",
                    "type": "requests",
                    "code": "insufficient_quota",
                }
            },
            ErrorKind.INSUFFICIENT_CREDITS,
        ),
    ],
)
def test_classify_http_reads_the_openai_error_code(status: int, body: object, kind: ErrorKind) -> None:
    assert classify_http(status, body) is kind


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=100, max_value=599), json_values)
def test_classify_http_is_total(status: int, body: object) -> None:
    kind = classify_http(status, body)
    assert isinstance(kind, ErrorKind)
    # Only these kinds can come out of an HTTP answer.
    assert kind in {
        ErrorKind.INVALID_REQUEST,
        ErrorKind.CONTENT_REJECTED,
        ErrorKind.AUTH_FAILED,
        ErrorKind.INSUFFICIENT_CREDITS,
        ErrorKind.RATE_LIMITED,
        ErrorKind.UPSTREAM_UNAVAILABLE,
    }
    if status >= 500:
        assert kind is ErrorKind.UPSTREAM_UNAVAILABLE
    if status in (401, 403):
        assert kind is ErrorKind.AUTH_FAILED


# --- error_from_response --------------------------------------------------------------------------


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "https://x/api"))


def test_error_from_response_rate_limited_carries_retry_after() -> None:
    err = error_from_response(_response(429, {"Retry-After": "7"}), {"error": {"message": "slow down"}})
    assert isinstance(err, RetryableError)
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after == 7.0
    assert err.http_status == 429
    assert err.message == "slow down"


def test_error_from_response_final_errors_ignore_retry_after() -> None:
    err = error_from_response(_response(400, {"Retry-After": "7"}), {"error": {"message": "bad"}})
    assert isinstance(err, FinalError)
    assert err.kind is ErrorKind.INVALID_REQUEST
    assert err.retry_after is None


def test_error_from_response_without_message_uses_status() -> None:
    err = error_from_response(_response(503), None)
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert err.message == "HTTP 503"
    assert err.retry_after is None


def test_error_from_response_status_override_for_in_body_codes() -> None:
    # An error inside an HTTP 200: classified by the body code, but the attempt log keeps the real status.
    err = error_from_response(_response(200), {"code": 402, "error": {"message": "no credits"}}, status=402)
    assert isinstance(err, AccountError)
    assert err.kind is ErrorKind.INSUFFICIENT_CREDITS
    assert err.http_status == 200
    assert err.message == "no credits"
    err = error_from_response(_response(200), {"code": 418}, status=418)
    assert err.message == "HTTP 418"


# --- map_transport_errors -------------------------------------------------------------------------


def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


HTTPX_REQUEST_ERRORS = sorted(
    {c for c in [httpx.RequestError, *_all_subclasses(httpx.RequestError)] if c.__module__.startswith("httpx")},
    key=lambda c: c.__name__,
)


def test_the_walk_finds_httpx_request_errors() -> None:
    names = {c.__name__ for c in HTTPX_REQUEST_ERRORS}
    assert {
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "ReadError",
        "WriteError",
        "CloseError",
        "RemoteProtocolError",
        "LocalProtocolError",
        "ProxyError",
        "UnsupportedProtocol",
        "DecodingError",
        "TooManyRedirects",
    } <= names


NOTHING_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def _expected_prefix(cls: type) -> str:
    if issubclass(cls, httpx.TimeoutException):
        return "timeout"
    if issubclass(cls, httpx.TransportError):
        return "transport error"
    return "request error"


@pytest.mark.parametrize("exc_cls", HTTPX_REQUEST_ERRORS, ids=lambda c: c.__name__)
def test_no_unmapped_httpx_exception(exc_cls: type) -> None:
    original = exc_cls("secret-bearing message", request=httpx.Request("GET", "https://x"))
    with pytest.raises(ProviderError) as info, map_transport_errors():
        raise original
    err = info.value
    # Only errors raised before anything was written are known not to have reached the upstream.
    maybe = not issubclass(exc_cls, NOTHING_SENT)
    assert type(err) is (MaybeSentError if maybe else RetryableError) and err.maybe_sent is maybe
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert err.retryable
    assert err.http_status is None
    assert err.retry_after is None
    assert err.__cause__ is original
    assert err.message == f"{_expected_prefix(exc_cls)}: {exc_cls.__name__}"


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("not ours"),
        httpx.HTTPStatusError("500", request=httpx.Request("GET", "https://x"), response=httpx.Response(500)),
        KeyError("k"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_exceptions_pass_through_unchanged(exc: Exception) -> None:
    with pytest.raises(type(exc)) as info, map_transport_errors():
        raise exc
    assert info.value is exc


def test_map_transport_errors_is_silent_without_errors() -> None:
    with map_transport_errors():
        value = 41 + 1
    assert value == 42
