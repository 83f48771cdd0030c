"""OpenAI client: request shapes, b64 decoding, error mapping; MockTransport and simulator."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from imagegen.errors import AccountError, ErrorKind, FinalError, MaybeSentError, ProviderError, RetryableError
from imagegen.net.urls import FetchPolicy
from imagegen.providers.base import GeneratedImage
from imagegen.providers.openai import OpenAIProvider, parse_images, upload_filename
from imagegen.request import ImageRequest
from imagegen.simulator import SimSettings, create_app
from imagegen.simulator.openai import parse_multipart
from imagegen.simulator.png import solid_png
from tests.support import recorder

# The provider passes a per-request timeout, which starlette's TestClient (used as the client) ignores.
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")

BASE = "https://api.openai.test/v1/"
KEY = "sk-test"
PNG = solid_png(8, 8, (1, 2, 3))
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
LOCAL = FetchPolicy(allow_private=True)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder(recorder.Recorder):
    """Records requests and answers with a canned response (``images_body()`` unless told)."""

    def default_body(self, request: httpx.Request) -> Any:
        return images_body()


def images_body(*items: dict[str, Any], usage: Any = None) -> dict[str, Any]:
    data = list(items) or [{"b64_json": base64.b64encode(PNG).decode(), "revised_prompt": "a cat"}]
    body: dict[str, Any] = {"created": 1_776_800_000, "data": data}
    body["usage"] = usage if usage is not None else {"total_tokens": 10, "input_tokens": 4, "output_tokens": 6}
    return body


def provider(handler: Handler, policy: FetchPolicy = LOCAL, **kw: Any) -> OpenAIProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return OpenAIProvider(client, base_url=BASE, api_key=KEY, fetch_policy=policy, **kw)


GEN = ImageRequest(provider="openai", model="gpt-image-2", prompt="a cat", quality="high", size="1024x1024")


def edit_request(urls: list[str], prompt: str = "make it blue") -> ImageRequest:
    req = ImageRequest(provider="openai", prompt=prompt, quality="low", size="1024x1536", image_urls=["https://x/y"])
    # Requests admit https image URLs only; the local reference server is plain http, which the
    # provider's own FetchPolicy(allow_private=True) accepts, so the URLs are swapped in after validation.
    object.__setattr__(req, "image_urls", tuple(urls))
    return req


@pytest.fixture(scope="module")
def refs() -> Iterator[str]:
    """A tiny HTTP server for reference images: /ref.png, /photo (jpeg), /missing.png (404), /notes.txt."""
    routes = {"/ref.png": (200, "image/png", PNG), "/photo": (200, "image/jpeg", JPEG)}
    routes["/notes.txt"] = (200, "text/plain", b"hello")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, ctype, body = routes.get(self.path, (404, "text/plain", b"nope"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def raises(call: Callable[[], object]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call()
    return info.value


# --- request shapes -------------------------------------------------------------------------------


def test_generation_sends_the_documented_json_with_a_long_read_timeout() -> None:
    rec = Recorder()
    result = provider(rec).submit(GEN, callback_url="https://me.example/hook")
    (request,) = rec.requests
    assert (request.method, str(request.url)) == ("POST", "https://api.openai.test/v1/images/generations")
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "model": "gpt-image-2",
        "prompt": "a cat",
        "n": 1,
        "size": "1024x1024",
        "quality": "high",
        "output_format": "png",
    }  # no response_format (GPT image models reject it), no callback_url (no webhooks)
    assert request.extensions["timeout"] == {"connect": 10.0, "read": 600.0, "write": 600.0, "pool": 600.0}
    assert result.task_id is None and result.status == "completed" and result.http_status == 200
    assert result.images == (GeneratedImage(data=PNG, content_type="image/png"),)
    assert result.usage == {"total_tokens": 10, "input_tokens": 4, "output_tokens": 6}


def test_generation_sends_only_fields_that_are_set_and_custom_timeout() -> None:
    rec = Recorder()
    provider(rec, read_timeout_s=42).submit(ImageRequest(provider="openai", prompt="p"))
    assert json.loads(rec.requests[0].content) == {
        "model": "gpt-image-2",
        "prompt": "p",
        "n": 1,
        "output_format": "png",
    }
    assert rec.requests[0].extensions["timeout"]["read"] == 42


def test_dalle_models_ask_for_b64_json() -> None:
    rec = Recorder()
    provider(rec).submit(ImageRequest(provider="openai", model="dall-e-3", prompt="p"))
    body = json.loads(rec.requests[0].content)
    assert body["response_format"] == "b64_json" and "output_format" not in body


def test_edit_uploads_the_downloaded_references_as_image_parts(refs: str) -> None:
    rec = Recorder()
    result = provider(rec).submit(edit_request([f"{refs}/ref.png", f"{refs}/photo"]))
    (request,) = rec.requests
    assert str(request.url) == "https://api.openai.test/v1/images/edits"
    assert request.extensions["timeout"]["read"] == 600.0
    form = parse_multipart(request.content, request.headers["Content-Type"])
    assert form is not None
    assert form.fields == {
        "prompt": "make it blue",
        "model": "gpt-image-2",
        "n": "1",
        "size": "1024x1536",
        "quality": "low",
    }
    assert [(f.name, f.filename, f.content_type, f.content) for f in form.files] == [
        ("image[]", "ref.png", "image/png", PNG),
        ("image[]", "photo.jpg", "image/jpeg", JPEG),
    ]
    assert result.images[0].data == PNG


@pytest.mark.parametrize(
    ("url", "content_type", "name"),
    [
        ("https://cdn.example/a/b/cat%20photo.webp?sig=1", "image/webp", "cat_photo.webp"),
        ("https://cdn.example/", "image/png", "image-3.png"),
        ("https://cdn.example/render", "image/jpeg", "render.jpg"),
        ("https://cdn.example/..", "image/png", "image-3.png"),
        ("https://cdn.example/" + "x" * 300 + ".png", "image/png", "x" * 96 + ".png"),
    ],
)
def test_upload_filename(url: str, content_type: str, name: str) -> None:
    assert upload_filename(url, 3, content_type) == name


def test_refused_reference_url_is_invalid_request_and_nothing_is_sent(refs: str) -> None:
    rec = Recorder()
    err = raises(lambda: provider(rec, FetchPolicy()).submit(edit_request([f"{refs}/ref.png"])))
    assert isinstance(err, FinalError) and err.kind is ErrorKind.INVALID_REQUEST
    assert err.message.startswith("image_urls.0: URL scheme 'http' refused")
    err = raises(lambda: provider(rec, FetchPolicy()).submit(edit_request(["https://127.0.0.1:9/x.png"])))
    assert err.kind is ErrorKind.INVALID_REQUEST and "loopback" in err.message
    err = raises(lambda: provider(rec).submit(edit_request([f"{refs}/ref.png", f"{refs}/notes.txt"])))
    assert err.kind is ErrorKind.INVALID_REQUEST and err.message.startswith("image_urls.1: content type 'text/plain'")
    assert rec.requests == []


def test_failed_reference_download_is_upstream_unavailable(refs: str) -> None:
    rec = Recorder()
    err = raises(lambda: provider(rec).submit(edit_request([f"{refs}/missing.png"])))
    assert isinstance(err, RetryableError) and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert err.message == "image_urls.0: download failed: HTTP 404" and err.http_status is None
    assert rec.requests == []


def test_status_is_not_supported() -> None:
    err = raises(lambda: provider(Recorder()).status("anything"))
    assert isinstance(err, FinalError) and err.kind is ErrorKind.INVALID_REQUEST
    assert err.message == "openai has no task status"


# --- answers --------------------------------------------------------------------------------------


def test_parse_images_decodes_every_item_and_types_them() -> None:
    wrapped = base64.encodebytes(PNG).decode()  # with newlines, as some servers send
    body = images_body(
        {"b64_json": wrapped},
        {"b64_json": base64.b64encode(JPEG).decode()},
        {"url": "https://cdn.example/img.png"},
    )
    body["output_format"] = "webp"
    result = parse_images(body)
    assert result.images == (
        GeneratedImage(data=PNG, content_type="image/png"),  # the bytes win over output_format
        GeneratedImage(data=JPEG, content_type="image/jpeg"),
        GeneratedImage(url="https://cdn.example/img.png"),
    )
    unknown = parse_images({"output_format": "webp", "data": [{"b64_json": base64.b64encode(b"abc").decode()}]})
    assert unknown.images[0].content_type == "image/webp" and unknown.usage is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": [{"b64_json": "not base64!"}]}, "data.0.b64_json is not valid base64"),
        ({"data": [{"b64_json": "===="}]}, "data.0.b64_json is not valid base64"),
        ({"data": []}, "answer has no images"),
        ({"created": 1}, "answer has no images"),
        ({"data": {"b64_json": "AA=="}}, "answer has no images"),
        ({"data": ["AA=="]}, "data.0 is not an object"),
        ({"data": [{"revised_prompt": "x"}]}, "data.0 has neither b64_json nor url"),
        ({"data": [{"url": "ftp://x/y.png"}]}, "data.0 has neither b64_json nor url"),
        ({"error": {"message": "internal", "type": "server_error"}}, "answer has no images: internal"),
    ],
)
def test_unusable_answers_are_upstream_unavailable(body: Any, message: str) -> None:
    err = raises(lambda: provider(Recorder(200, body)).submit(GEN))
    assert isinstance(err, RetryableError) and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert (err.message, err.http_status) == (message, 200)


@pytest.mark.parametrize("content", [b"<html>oops", b"[1, 2]", b'"text"'])
def test_non_object_answers_are_upstream_unavailable(content: bytes) -> None:
    err = raises(lambda: provider(lambda r: httpx.Response(200, content=content)).submit(GEN))
    assert err.kind is ErrorKind.UPSTREAM_UNAVAILABLE


# --- errors (both endpoints) ----------------------------------------------------------------------


def oai_error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


RATE = oai_error("Rate limit exceeded for images per minute", "requests", "rate_limit_exceeded")
QUOTA = oai_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota")
BAD_SIZE = oai_error("Invalid value: '999x999'.", "invalid_request_error", "invalid_value", "size")
BLOCKED = oai_error(
    "Your request was rejected by the safety system.", "image_generation_user_error", "moderation_blocked"
)
POLICY = oai_error("Rejected.", "invalid_request_error", "content_policy_violation")
SAFETY_TEXT = oai_error("Your request was rejected as a result of our safety system.", "invalid_request_error")
BAD_KEY = oai_error("Incorrect API key provided", "invalid_request_error", "invalid_api_key")
REGION = oai_error("Country, region, or territory not supported", "request_forbidden")
NO_MODEL = oai_error("The model 'gpt-x' does not exist", "invalid_request_error", "model_not_found")
OVERLOADED = oai_error("The engine is currently overloaded", "server_error", "server_is_overloaded")
ERROR_ROWS = [
    (400, BAD_SIZE, {}, "invalid_request", None),
    (400, BLOCKED, {}, "content_rejected", None),
    (400, POLICY, {}, "content_rejected", None),
    (400, SAFETY_TEXT, {}, "content_rejected", None),
    (401, BAD_KEY, {}, "auth_failed", None),
    (403, REGION, {}, "auth_failed", None),
    (404, NO_MODEL, {}, "invalid_request", None),
    (429, RATE, {"retry-after-ms": "1500", "retry-after": "7"}, "rate_limited", 1.5),
    (429, RATE, {"retry-after": "7"}, "rate_limited", 7.0),
    (429, RATE, {}, "rate_limited", None),
    (429, QUOTA, {"retry-after": "5"}, "insufficient_credits", None),
    (429, oai_error("You exceeded your current quota", "insufficient_quota"), {}, "insufficient_credits", None),
    (500, oai_error("The server had an error", "server_error"), {}, "upstream_unavailable", None),
    (502, "<html>Bad Gateway</html>", {}, "upstream_unavailable", None),
    (503, OVERLOADED, {"retry-after": "2"}, "upstream_unavailable", 2.0),
    (504, oai_error("Gateway timeout", "server_error"), {}, "upstream_unavailable", None),
]
_CLASSES: dict[str, type[ProviderError]] = {"rate_limited": RetryableError, "upstream_unavailable": RetryableError}
_CLASSES |= {"auth_failed": AccountError, "insufficient_credits": AccountError}


@pytest.mark.parametrize("edit", [False, True], ids=["generations", "edits"])
@pytest.mark.parametrize(("status", "body", "headers", "kind", "retry_after"), ERROR_ROWS)
def test_error_mapping(
    refs: str, edit: bool, status: int, body: Any, headers: dict[str, str], kind: str, retry_after: float | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    req = edit_request([f"{refs}/ref.png"]) if edit else GEN
    err = raises(lambda: provider(handler).submit(req))
    assert err.kind == kind and err.http_status == status and err.retry_after == retry_after
    # A gateway 502/504 may hide a finished (paid) generation: same kind, flagged as maybe sent.
    maybe = status in (502, 504)
    assert type(err) is (MaybeSentError if maybe else _CLASSES.get(kind, FinalError)) and err.maybe_sent is maybe
    expected = body if isinstance(body, str) else body["error"]["message"]
    assert err.message == expected


@pytest.mark.parametrize("edit", [False, True], ids=["generations", "edits"])
@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("t"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("eof"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_and_timeouts_are_upstream_unavailable(refs: str, edit: bool, exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    req = edit_request([f"{refs}/ref.png"]) if edit else GEN
    err = raises(lambda: provider(handler).submit(req))
    assert isinstance(err, RetryableError) and err.kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert err.http_status is None and err.__cause__ is exc


# --- against the simulator ------------------------------------------------------------------------


@pytest.fixture
def sim() -> TestClient:
    return TestClient(create_app(SimSettings(duration_s=0)))


def sim_provider(sim: TestClient, key: str = "sk-sim") -> OpenAIProvider:
    return OpenAIProvider(sim, base_url="http://testserver/openai/v1", api_key=key, fetch_policy=LOCAL)


def test_simulator_generation(sim: TestClient) -> None:
    result = sim_provider(sim).submit(ImageRequest(provider="openai", prompt="a cat [[slow:0.05]]", quality="low"))
    (image,) = result.images
    assert image.content_type == "image/png" and image.data is not None and image.data.startswith(b"\x89PNG")
    assert result.usage is not None and result.usage["output_tokens"] == 272
    (record,) = sim.get("/_sim/requests").json()
    assert (record["provider"], record["endpoint"], record["path"]) == (
        "openai",
        "submit",
        "/openai/v1/images/generations",
    )
    assert (record["status_code"], record["directives"]) == (200, ["slow:0.05"])


def test_simulator_edit_records_the_uploads(sim: TestClient, refs: str) -> None:
    result = sim_provider(sim).submit(edit_request([f"{refs}/ref.png", f"{refs}/photo"], prompt="edit [[instant]]"))
    assert result.images[0].data is not None and result.usage is not None
    assert result.usage["input_tokens_details"]["image_tokens"] > 0
    (record,) = sim.get("/_sim/requests").json()
    assert record["path"] == "/openai/v1/images/edits" and record["status_code"] == 200
    assert (record["image_count"], record["image_bytes"]) == (2, [len(PNG), len(JPEG)])


@pytest.mark.parametrize(
    ("directive", "kind", "retry_after"),
    [
        ("[[400]]", ErrorKind.INVALID_REQUEST, None),
        ("[[401]]", ErrorKind.AUTH_FAILED, None),
        ("[[403]]", ErrorKind.AUTH_FAILED, None),
        ("[[429]]", ErrorKind.RATE_LIMITED, 1.0),
        ("[[429:ra=3]]", ErrorKind.RATE_LIMITED, 3.0),
        ("[[429:noheader]]", ErrorKind.RATE_LIMITED, None),
        ("[[quota]]", ErrorKind.INSUFFICIENT_CREDITS, None),
        ("[[moderation]]", ErrorKind.CONTENT_REJECTED, None),
        ("[[500]]", ErrorKind.UPSTREAM_UNAVAILABLE, None),
        ("[[503]]", ErrorKind.UPSTREAM_UNAVAILABLE, None),
        ("[[malformed]]", ErrorKind.UPSTREAM_UNAVAILABLE, None),
        ("[[code500]]", ErrorKind.UPSTREAM_UNAVAILABLE, None),
    ],
)
def test_simulator_directives_map_to_error_kinds(
    sim: TestClient, directive: str, kind: ErrorKind, retry_after: float | None
) -> None:
    err = raises(lambda: sim_provider(sim).submit(ImageRequest(provider="openai", prompt=f"x {directive}")))
    assert err.kind is kind and err.retry_after == retry_after


def test_simulator_counted_faults_then_success(sim: TestClient, refs: str) -> None:
    p = sim_provider(sim)
    req = ImageRequest(provider="openai", prompt="y [[500x2]] [[429x1]]")
    kinds = [raises(lambda: p.submit(req)).kind for _ in range(3)]
    assert kinds == [ErrorKind.UPSTREAM_UNAVAILABLE] * 2 + [ErrorKind.RATE_LIMITED]
    assert p.submit(req).images
    edit = edit_request([f"{refs}/ref.png"], prompt="z [[503x1]]")
    assert raises(lambda: p.submit(edit)).kind is ErrorKind.UPSTREAM_UNAVAILABLE
    assert p.submit(edit).images


def test_simulator_rejects_the_invalid_key(sim: TestClient) -> None:
    err = raises(lambda: sim_provider(sim, key="invalid").submit(GEN))
    assert isinstance(err, AccountError) and err.kind is ErrorKind.AUTH_FAILED and err.http_status == 401
