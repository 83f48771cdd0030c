"""The fake OpenAI Images API, mounted under ``/openai/v1``.

``POST /images/generations`` (JSON) and ``POST /images/edits`` (multipart, ``image[]`` parts) answer
synchronously after the task duration with ``data[].b64_json`` and ``usage``, or with an OpenAI-style
error. Faults come from the shared prompt directives (see ``directives.py``), ``quota`` included.
The multipart body is parsed here with the standard library, so the simulator needs no extra package.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from dataclasses import dataclass
from email.message import Message
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .common import Call, bearer_ok
from .directives import Directives, extract_tokens, parse_directives, pick_fault
from .errors import (
    OPENAI_UNAUTHORIZED,
    OpenAIError,
    Rendered,
    openai_invalid,
    render_openai_error,
    render_openai_fault,
)
from .filefaults import result_bytes
from .png import task_png
from .state import SimState

MODELS = (
    "gpt-image-1",
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "gpt-image-2",
    "gpt-image-2-2026-04-21",
    "chatgpt-image-latest",
    "dall-e-2",
    "dall-e-3",
)
NAMED_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
DALLE_SIZES = ("256x256", "512x512", "1024x1024", "1792x1024", "1024x1792")
GPT_QUALITIES = ("low", "medium", "high", "auto")
DALLE_QUALITIES = ("standard", "hd", "auto")
_CHOICES = {
    "output_format": ("png", "jpeg", "webp"),
    "background": ("transparent", "opaque", "auto"),
    "moderation": ("low", "auto"),
    "input_fidelity": ("high", "low"),
}
_COMMON_PARAMS = frozenset(
    {"model", "prompt", "n", "size", "quality", "background", "output_format", "output_compression", "user"}
)
GENERATION_PARAMS = _COMMON_PARAMS | {"moderation", "response_format", "style", "stream", "partial_images"}
EDIT_PARAMS = _COMMON_PARAMS | {"input_fidelity", "response_format", "stream", "partial_images"}
IMAGE_FIELDS = ("image[]", "image")
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_PROMPT = 32_000
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# gpt-image-1 token counts for one 1024x1024 image, by quality (public pricing tables).
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
_IMAGE_INPUT_TOKENS = 323
_WXH = re.compile(r"([1-9][0-9]{0,4})x([1-9][0-9]{0,4})")
#: Per-provider submit counters, so a prompt's ``[[429x2]]`` counts OpenAI calls only.
COUNTER_PREFIX = "openai\x00"


@dataclass
class OpenAICall(Call):
    """A :class:`Call` that also records the error ``code`` string and the uploaded images."""

    image_bytes: tuple[int, ...] | None = None

    def extra_facts(self, rendered: Rendered) -> dict[str, Any]:
        """The OpenAI-only facts: the error ``code`` string and the uploaded images' sizes."""
        return {"error_code": rendered.error_code, "image_bytes": self.image_bytes}


@dataclass(frozen=True)
class FilePart:
    """One uploaded file of a multipart body."""

    name: str
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Form:
    """A parsed ``multipart/form-data`` body: text fields and file parts."""

    fields: dict[str, object]
    files: tuple[FilePart, ...]


def parse_json_object(raw: bytes) -> dict[str, object] | None:
    """The JSON object body, or None if it is not one."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _header_params(name: str, value: str) -> Message:
    msg = Message()
    msg[name] = value
    return msg


def parse_multipart(body: bytes, content_type: str) -> Form | None:
    """Parse ``multipart/form-data`` (RFC 7578); None if the body is not a well-formed one."""
    header = _header_params("content-type", content_type)
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        return None
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        return None  # no closing delimiter: truncated
    fields: dict[str, object] = {}
    files: list[FilePart] = []
    for chunk in chunks[1:-1]:
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            return None
        headers = _part_headers(head)
        disposition = _header_params("content-disposition", headers.get("content-disposition", ""))
        name = disposition.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            return None
        filename = disposition.get_filename()
        if filename is None:
            fields[name] = content.decode("utf-8", "replace")
        else:
            files.append(FilePart(name, filename, headers.get("content-type", "application/octet-stream"), content))
    return Form(fields, tuple(files))


def _part_headers(head: bytes) -> dict[str, str]:
    headers = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return headers


def _as_int(value: object, *, text_ok: bool = True) -> int | None:
    """JSON sends numbers, multipart (``text_ok``) sends digit strings; anything else is None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if text_ok and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def size_problem(size: object, model: str) -> OpenAIError | None:
    """OpenAI's size rules: named sizes, DALL·E sizes, or (gpt-image-2) a bounded custom ``WxH``."""
    named = DALLE_SIZES if model.startswith("dall-e") else NAMED_SIZES
    if size in named:
        return None
    match = _WXH.fullmatch(size) if isinstance(size, str) else None
    if match is None or not model.startswith("gpt-image-2"):
        supported = ", ".join(f"'{s}'" for s in named)
        return openai_invalid(f"Invalid value: '{size}'. Supported values are: {supported}.", "size", "invalid_value")
    w, h = int(match[1]), int(match[2])
    if w % 16 or h % 16:
        problem = "both sides must be multiples of 16"
    elif max(w, h) > 3840:
        problem = "the long edge must be at most 3840 pixels"
    elif max(w, h) > 3 * min(w, h):
        problem = "the aspect ratio must be between 1:3 and 3:1"
    elif not 655_360 <= w * h <= 8_294_400:
        problem = "the image must have between 655,360 and 8,294,400 pixels"
    else:
        return None
    return openai_invalid(f"Invalid size '{size}': {problem}.", "size", "invalid_value")


def check_fields(fields: dict[str, object], *, edit: bool) -> OpenAIError | None:
    """Validate the parameters like OpenAI: unknown names, prompt, model, n, size, quality, enums."""
    unknown = sorted(set(fields) - (EDIT_PARAMS if edit else GENERATION_PARAMS))
    if unknown:
        return openai_invalid(f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return openai_invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if len(prompt) > MAX_PROMPT:
        return openai_invalid(
            f"Invalid 'prompt': string too long (max {MAX_PROMPT}).", "prompt", "string_above_max_length"
        )
    model = fields.get("model", "gpt-image-1.5" if edit else "dall-e-2")
    if not isinstance(model, str) or model not in MODELS:
        supported = ", ".join(f"'{m}'" for m in MODELS)
        return openai_invalid(f"Invalid value: '{model}'. Supported values are: {supported}.", "model", "invalid_value")
    gpt = not model.startswith("dall-e")
    n = _as_int(fields.get("n", 1), text_ok=edit)
    if n is None or not 1 <= n <= 10:
        return openai_invalid(
            f"Invalid 'n': {fields.get('n')!r}; expected an integer from 1 to 10.", "n", "invalid_value"
        )
    if "size" in fields and (problem := size_problem(fields["size"], model)) is not None:
        return problem
    qualities = GPT_QUALITIES if gpt else DALLE_QUALITIES
    if "quality" in fields and fields["quality"] not in qualities:
        return openai_invalid(f"Invalid value: '{fields['quality']}'. Supported values are: {qualities}.", "quality")
    if gpt and "response_format" in fields:
        # GPT image models always answer b64_json and reject the DALL·E parameter.
        return openai_invalid("Unknown parameter: 'response_format'.", "response_format", "unknown_parameter")
    for name, choices in _CHOICES.items():
        if name in fields and fields[name] not in choices:
            return openai_invalid(f"Invalid value: '{fields[name]}'. Supported values are: {choices}.", name)
    return None


def check_images(files: tuple[FilePart, ...]) -> OpenAIError | None:
    """The edit's ``image[]`` parts: 1 to 16 PNG/JPEG/WebP files under 50 MB whose bytes are images."""
    images = [f for f in files if f.name in IMAGE_FIELDS]
    if not images:
        return openai_invalid("Missing required parameter: 'image'.", "image", "missing_required_parameter")
    if len(images) > MAX_IMAGES:
        return openai_invalid(f"Invalid 'image': at most {MAX_IMAGES} images.", "image", "array_above_max_length")
    for i, part in enumerate(images):
        media = part.content_type.split(";")[0].strip().lower()
        if media not in IMAGE_TYPES:
            message = (
                f"Invalid file 'image': unsupported mimetype ('{media}'). Supported file formats are {IMAGE_TYPES}."
            )
            return openai_invalid(message, "image", "invalid_image_format")
        if len(part.content) > MAX_IMAGE_BYTES:
            return openai_invalid(f"Invalid 'image' {i}: larger than 50 MB.", "image", "image_too_large")
        if not _looks_like_image(part.content):
            message = f"Invalid image file or mode for image {i + 1}, please check your image file."
            return openai_invalid(message, "image", "invalid_image")
    return None


def _looks_like_image(data: bytes) -> bool:
    return data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def usage(prompt: str, quality: object, n: int, image_count: int) -> dict[str, object]:
    """A plausible ``usage`` object (token counts are illustrative, the shape is the SDK's)."""
    text = max(1, len(prompt) // 4)
    image_in = _IMAGE_INPUT_TOKENS * image_count
    out = _OUTPUT_TOKENS.get(str(quality), _OUTPUT_TOKENS["medium"]) * n
    return {
        "total_tokens": text + image_in + out,
        "input_tokens": text + image_in,
        "output_tokens": out,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
        "output_tokens_details": {"text_tokens": 0, "image_tokens": out},
    }


def images_body(fields: dict[str, object], request_id: str, now: float, image_count: int) -> dict[str, object]:
    """The ``ImagesResponse`` (always PNG bytes, so ``output_format`` says png)."""
    n = _as_int(fields.get("n", 1)) or 1
    tokens = extract_tokens(str(fields.get("prompt", "")))
    images = [result_bytes(tokens, "openai", task_png(f"{request_id}-{i}")) for i in range(n)]
    data = [{"b64_json": base64.b64encode(image).decode()} for image in images]
    size = fields.get("size")
    return {
        "created": int(now),
        "background": "opaque",
        "output_format": "png",
        "quality": fields.get("quality", "auto"),
        "size": size if size not in (None, "auto") else "1024x1024",
        "data": data,
        "usage": usage(str(fields.get("prompt", "")), fields.get("quality"), n, image_count),
    }


def _start(state: SimState, request: Request, fields: dict[str, object] | None) -> tuple[OpenAICall, Directives]:
    prompt = fields.get("prompt") if fields is not None else None
    prompt = prompt if isinstance(prompt, str) else None
    directives = parse_directives(prompt, provider="openai") if prompt else Directives()
    call = OpenAICall(state, request, "submit", provider="openai", prompt=prompt, directives=directives.tokens)
    return call, directives


async def _generate(
    state: SimState,
    call: OpenAICall,
    directives: Directives,
    fields: dict[str, object],
    files: tuple[FilePart, ...] | None,
) -> Response:
    """Faults, validation, the render time, then the answer (and an optional hang after it).

    ``files`` is None for a generation, the uploaded parts for an edit.
    """
    index = state.next_submit_call(COUNTER_PREFIX + call.prompt) if call.prompt else 0
    fault = pick_fault(directives.submit_faults, index)
    if fault is not None:
        return call.send(render_openai_fault(fault, now=state.now()))
    problem = check_fields(fields, edit=files is not None)
    if problem is None and files is not None:
        problem = check_images(files)
    if problem is not None:
        return call.send(render_openai_error(problem))
    started = state.now()
    await asyncio.sleep(state.sample_duration(directives.duration_s))
    request_id = f"req_{secrets.token_hex(12)}"
    headers = {
        "x-request-id": request_id,
        "openai-version": "2020-10-01",
        "openai-processing-ms": str(max(0, int((state.now() - started) * 1000))),
    }
    body = images_body(fields, request_id, state.now(), len(call.image_bytes or ()))
    # Recorded before any hang: the generation happened (and was paid) even if the client times out.
    response = call.send(Rendered(JSONResponse(body, 200, headers), None, None))
    if directives.hang_s > 0 and (directives.hang_count is None or index < directives.hang_count):
        await asyncio.sleep(directives.hang_s)
    return response


async def generations(state: SimState, request: Request) -> Response:
    """``POST /images/generations``: JSON body."""
    payload = parse_json_object(await request.body())
    call, directives = _start(state, request, payload)
    if not bearer_ok(request):
        return call.send(render_openai_error(OPENAI_UNAUTHORIZED))
    if payload is None:
        return call.send(render_openai_error(openai_invalid("We could not parse the JSON body of your request.")))
    return await _generate(state, call, directives, payload, None)


async def edits(state: SimState, request: Request) -> Response:
    """``POST /images/edits``: multipart with ``image[]`` (or ``image``) files; the uploads are recorded."""
    form = parse_multipart(await request.body(), request.headers.get("content-type", ""))
    call, directives = _start(state, request, form.fields if form is not None else None)
    if form is not None:
        call.image_bytes = tuple(len(f.content) for f in form.files if f.name in IMAGE_FIELDS)
    if not bearer_ok(request):
        return call.send(render_openai_error(OPENAI_UNAUTHORIZED))
    if form is None:
        return call.send(render_openai_error(openai_invalid("Invalid body: expected multipart/form-data.")))
    return await _generate(state, call, directives, form.fields, form.files)


def make_router(state: SimState) -> APIRouter:
    """Build the OpenAI router (mount it with prefix ``/openai/v1``)."""
    router = APIRouter(tags=["openai"])

    @router.post("/images/generations")
    async def _generations(request: Request) -> Response:
        return await generations(state, request)

    @router.post("/images/edits")
    async def _edits(request: Request) -> Response:
        return await edits(state, request)

    return router
