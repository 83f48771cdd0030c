"""OpenAI Images API client: synchronous ``/images/generations`` and ``/images/edits``.

One call is the whole generation (minutes at high quality) and answers with the images themselves
(``data[].b64_json``), so ``submit`` returns decoded bytes and there is no task to poll. Reference images
are downloaded by us through the safe fetcher and uploaded as ``image[]`` parts.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from imagegen.errors import ErrorKind, FetchFailed, ProviderError, UnsafeURL, provider_error
from imagegen.net.fetch import fetch
from imagegen.net.urls import FetchPolicy
from imagegen.providers.base import GeneratedImage, SubmitResult, UpstreamState, require_key, send
from imagegen.providers.http import error_message_from_body
from imagegen.request import ImageRequest

#: Connecting is quick or broken; only the read (the render) may take minutes.
CONNECT_TIMEOUT_S = 10.0
_FORMAT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MAX_FILENAME = 100
_MAX_URL = 4096

#: A multipart file entry for httpx: ``(field, (filename, bytes, content type))``.
FilePart = tuple[str, tuple[str, bytes, str]]


class OpenAIProvider:
    """Talks to the OpenAI Images API (or anything speaking it, such as the simulator)."""

    name = "openai"
    synchronous = True
    key_variable = "OPENAI_API_KEY"

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        api_key: str,
        fetch_policy: FetchPolicy,
        read_timeout_s: float = 600.0,
        read_upload: Callable[[str], bytes] | None = None,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._key_set = bool(api_key.strip())
        # No Content-Type here: httpx sets JSON or multipart (with its boundary) per request.
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._fetch_policy = fetch_policy
        self._read_upload = read_upload
        # Per request, whatever the shared client's default: the answer comes only when the image is done.
        self._timeout = httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S)

    def submit(
        self, request: ImageRequest, *, callback_url: str | None = None, idempotency_key: str | None = None
    ) -> SubmitResult:
        """Generate (or edit, when the request has ``image_urls``) and return the decoded images.

        ``callback_url`` is ignored: the Images API is synchronous and has no webhooks; nor does it
        document ``Idempotency-Key``, so none is sent. Reference images are all downloaded before the
        (paid) upstream call, so a bad URL costs nothing.
        """
        require_key(self._key_set, self.key_variable)
        if request.image_urls or request.image_files:
            files = self._download(request.image_urls or ()) + self._uploads(request.image_files or ())
            response, body = self._post("/images/edits", data=build_edit_fields(request), files=files)
        else:
            response, body = self._post("/images/generations", json=build_generation_body(request))
        return parse_images(body, http_status=response.status_code)

    def status(self, task_id: str) -> UpstreamState:
        """Synchronous providers have no status endpoint; calling this is a caller bug."""
        raise provider_error(ErrorKind.INVALID_REQUEST, "openai has no task status")

    def _post(self, path: str, **kwargs: Any) -> tuple[httpx.Response, dict[str, Any]]:
        return send(self._client, "POST", self._base + path, headers=self._headers, timeout=self._timeout, **kwargs)

    def _uploads(self, keys: Sequence[str]) -> list[FilePart]:
        parts: list[FilePart] = []
        for i, key in enumerate(keys):
            try:
                if self._read_upload is None:
                    raise FileNotFoundError(key)
                data = self._read_upload(key)
            except OSError as exc:
                # Uploaded on another host with local storage, or purged: this request cannot succeed.
                raise provider_error(ErrorKind.INVALID_REQUEST, f"image_files.{i}: not in storage ({exc})") from exc
            content_type = sniff_image_type(data) or "image/png"
            parts.append(("image[]", (upload_filename(key, i, content_type), data, content_type)))
        return parts

    def _download(self, urls: Sequence[str]) -> list[FilePart]:
        parts: list[FilePart] = []
        for i, url in enumerate(urls):
            try:
                fetched = fetch(url, self._fetch_policy)
            except UnsafeURL as exc:
                # Refused by policy: the request itself is wrong, repeating it cannot help.
                raise provider_error(ErrorKind.INVALID_REQUEST, f"image_urls.{i}: {exc}") from exc
            except FetchFailed as exc:
                raise provider_error(ErrorKind.UPSTREAM_UNAVAILABLE, f"image_urls.{i}: download failed: {exc}") from exc
            filename = upload_filename(url, i, fetched.content_type)
            parts.append(("image[]", (filename, fetched.content, fetched.content_type)))
        return parts


def _is_gpt_image(model: str) -> bool:
    # Everything but DALL·E is treated as a GPT image model (gpt-image-*, chatgpt-image-latest, new ids).
    return not model.startswith("dall-e")


def build_generation_body(request: ImageRequest) -> dict[str, Any]:
    """The JSON body of ``/images/generations``: only fields that are set; one image per job."""
    body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": 1}
    if request.size is not None:
        body["size"] = request.size
    if request.quality is not None:
        body["quality"] = request.quality
    if _is_gpt_image(request.model):
        body["output_format"] = "png"  # GPT image models reject response_format and always send b64_json
    else:
        body["response_format"] = "b64_json"  # DALL·E defaults to URLs that expire after an hour
    return body


def build_edit_fields(request: ImageRequest) -> dict[str, str]:
    """The text fields of the ``/images/edits`` multipart body (the files go separately)."""
    fields = {"prompt": request.prompt, "model": request.model, "n": "1"}
    if request.size is not None:
        fields["size"] = request.size
    if request.quality is not None:
        fields["quality"] = request.quality
    return fields


def upload_filename(url: str, index: int, content_type: str) -> str:
    """A safe filename for an uploaded reference: the URL's last path segment, or ``image-{index}``.

    OpenAI checks the upload's type, so a name without an extension gets one from the content type.
    """
    try:
        raw = PurePosixPath(unquote(urlsplit(url).path)).name
    except ValueError:
        raw = ""
    name = _UNSAFE_NAME_CHARS.sub("_", raw)[-_MAX_FILENAME:].lstrip(".")
    if not name.strip("_"):
        name = f"image-{index}"
    if "." not in name:
        name += _EXTENSIONS.get(content_type, ".png")
    return name


def parse_images(body: dict[str, Any], *, http_status: int = 200) -> SubmitResult:
    """Read an ``ImagesResponse``; anything unusable is ``upstream_unavailable`` (a retry may do better)."""
    items = body.get("data")
    if not isinstance(items, list) or not items:
        message, _ = error_message_from_body(body)  # some relays answer 200 with only an "error"
        if message:  # an error answer, in a 2xx: nothing was generated
            raise _malformed(f"answer has no images: {message}", http_status, maybe_sent=False)
        raise _malformed("answer has no images", http_status)
    fmt = body.get("output_format")
    declared = _FORMAT_TYPES.get(fmt.lower(), "image/png") if isinstance(fmt, str) else "image/png"
    images = tuple(_image(item, i, declared, http_status) for i, item in enumerate(items))
    usage = body.get("usage")
    return SubmitResult(
        task_id=None,
        status="completed",
        http_status=http_status,
        images=images,
        usage=usage if isinstance(usage, dict) else None,
    )


def _image(item: Any, index: int, declared_type: str, http_status: int) -> GeneratedImage:
    if not isinstance(item, dict):
        raise _malformed(f"data.{index} is not an object", http_status)
    b64 = item.get("b64_json")
    if isinstance(b64, str) and b64:
        try:
            data = base64.b64decode("".join(b64.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _malformed(f"data.{index}.b64_json is not valid base64", http_status) from None
        if not data:
            raise _malformed(f"data.{index}.b64_json is empty", http_status)
        return GeneratedImage(data=data, content_type=sniff_image_type(data) or declared_type)
    url = item.get("url")
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= _MAX_URL:
        return GeneratedImage(url=url)
    raise _malformed(f"data.{index} has neither b64_json nor url", http_status)


def sniff_image_type(data: bytes) -> str | None:
    """The media type the bytes themselves announce (PNG, JPEG, WebP), if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _malformed(message: str, http_status: int, *, maybe_sent: bool = True) -> ProviderError:
    # A 2xx we cannot use: the image was probably generated (and paid for) all the same.
    return provider_error(ErrorKind.UPSTREAM_UNAVAILABLE, message, http_status=http_status, maybe_sent=maybe_sent)
