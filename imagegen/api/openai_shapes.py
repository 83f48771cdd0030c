"""OpenAI Images API shapes, pure: an OpenAI body as our requests, a job's ending as an OpenAI error.

No I/O here: the routes (``api.openai_compat``) read bodies, queue, wait and read stored images; this
module decides what those mean. The one validator is still ``ImageRequest``: a body is mapped to its
fields, then validated, and a core field error is reported under the OpenAI parameter it came from.

Sizes and qualities are mapped to the serving provider's own terms (README, "OpenAI-compatible use"):
APIDot takes an aspect ratio plus a resolution tier, OpenAI and image2 take OpenAI's sizes as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagegen.errors import ErrorKind, RequestInvalid
from imagegen.request import OPENAI_SIZES, ImageRequest, openai_size_problem
from imagegen.routes import OPENAI_TO_RATIO
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus

MAX_N = 10
MAX_IMAGES = 16
MAX_USER = 256
RESPONSE_FORMATS = ("b64_json", "url")
QUALITIES = ("low", "medium", "high", "auto", "standard", "hd")
#: DALL·E's qualities, in GPT Image terms.
DALL_E_QUALITIES = {"standard": "medium", "hd": "high"}
#: A custom ``WxH`` on APIDot needs a tier: 2K up to this long edge, 4K above it.
APIDOT_2K_MAX_EDGE = 2048
#: OpenAI's own image model ids: APIDot serves them all as its GPT Image 2.
_OPENAI_MODEL = re.compile(r"^(gpt-image|chatgpt-image|dall-e)")
_WXH = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})\Z")
#: OpenAI parameters accepted and not acted on (the provider decides), each with its allowed values.
_IGNORED: dict[str, tuple[str, ...] | None] = {
    "background": ("auto", "opaque", "transparent"),
    "moderation": ("auto", "low"),
    "output_format": ("png", "jpeg", "webp"),
    "style": ("vivid", "natural"),
    "input_fidelity": ("high", "low"),
    "output_compression": None,
    "partial_images": None,
}
_KNOWN = {"prompt", "model", "n", "size", "quality", "response_format", "user", "stream", *_IGNORED}
#: Where a core field error is reported, in OpenAI's parameter names.
_PARAMS = {
    "resolution": "size",
    "image_files": "image",
    "image_urls": "image",
    "metadata": "user",
    "idempotency_key": None,
    "request": None,
}
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


class OpenAICompatError(Exception):
    """An answer in OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body, as the openai SDK reads it (``error.code``, ``error.param``)."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None, code: str | None = None) -> OpenAICompatError:
    """A 400 ``invalid_request_error`` naming ``param``."""
    return OpenAICompatError(400, message, param=param, code=code)


@dataclass(frozen=True)
class ImagesCall:
    """One OpenAI images call, understood: what each job asks, and how to answer."""

    fields: dict[str, Any]
    n: int
    response_format: str
    #: What OpenAI echoes for GPT image models (``quality``), when it is known from the request.
    echo: dict[str, str] = field(default_factory=dict)


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string", name)
    return value


def _integer(value: Any, name: str, *, form: bool) -> int | None:
    if value is None:
        return None
    if form and isinstance(value, str) and re.fullmatch(r"\d{1,3}", value.strip()):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise invalid(f"{name} must be an integer", name)


def _check_ignored(body: Mapping[str, Any], *, form: bool) -> None:
    for name, allowed in _IGNORED.items():
        value = body.get(name)
        if value is None:
            continue
        if allowed is None:
            number = _integer(value, name, form=form)
            if number is None or not 0 <= number <= 100:
                raise invalid(f"{name} must be between 0 and 100", name)
        elif value not in allowed:
            raise invalid(f"{name} must be one of {', '.join(allowed)}", name)
    stream = body.get("stream")
    if stream is True or (form and isinstance(stream, str) and stream.lower() == "true"):
        raise invalid("streaming is not supported here: call without stream", "stream")


def provider_model(model: str | None, provider: str, *, edit: bool) -> str:
    """The model the provider is asked for: APIDot serves OpenAI's image models as GPT Image 2
    (``-edit`` for edits); another id is taken as the provider's own. OpenAI and image2 get it as sent."""
    if provider == "apidot" and (model is None or _OPENAI_MODEL.match(model)):
        return "gpt-image-2-edit" if edit else "gpt-image-2"
    return model or "gpt-image-2"


def map_size(size: str | None, provider: str) -> tuple[str | None, str | None]:
    """``(size, resolution)`` for ``provider`` from an OpenAI ``size``; ``OpenAICompatError`` if none fits."""
    if size is None or provider != "apidot":
        return size, None  # OpenAI-shaped providers take OpenAI's sizes; the core validator judges them
    if size == "auto":
        return "auto", None
    if size in OPENAI_TO_RATIO:
        return OPENAI_TO_RATIO[size], None  # APIDot's 1K tier
    match = _WXH.match(size)
    problem = openai_size_problem(size, "gpt-image-2") if match else "is not a size"
    if match is None or problem is not None:
        allowed = ", ".join(OPENAI_SIZES)
        raise invalid(f"size {problem}: use one of {allowed}, or WxH (multiples of 16, at most 3:1)", "size")
    long_edge = max(int(match[1]), int(match[2]))
    return size, "2K" if long_edge <= APIDOT_2K_MAX_EDGE else "4K"


def map_quality(quality: str | None, provider: str) -> str | None:
    """The provider's quality for an OpenAI one (``auto``: the provider's default, unless it is OpenAI)."""
    if quality is None:
        return None
    if quality not in QUALITIES:
        raise invalid(f"quality must be one of {', '.join(QUALITIES)}", "quality")
    quality = DALL_E_QUALITIES.get(quality, quality)
    if quality == "auto" and provider != "openai":
        return None
    return quality


def parse_call(body: Any, provider: str, *, edit: bool = False, form: bool = False) -> ImagesCall:
    """Understand an images body (JSON, or a multipart form's text fields when ``form``)."""
    if not isinstance(body, Mapping):
        raise invalid("the body must be a JSON object", None)
    unknown = sorted(k for k in body if k not in _KNOWN)
    if unknown:
        raise invalid(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    prompt = _text(body, "prompt")
    if prompt is None:
        raise invalid("prompt is required", "prompt")
    n = _integer(body.get("n"), "n", form=form)
    if n is not None and not 1 <= n <= MAX_N:
        raise invalid(f"n must be between 1 and {MAX_N}", "n")
    model = _text(body, "model")
    response_format = _text(body, "response_format")
    if response_format is not None and response_format not in RESPONSE_FORMATS:
        raise invalid(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}", "response_format")
    user = _text(body, "user")
    if user is not None and len(user) > MAX_USER:
        raise invalid(f"user must be at most {MAX_USER} characters", "user")
    _check_ignored(body, form=form)
    size, resolution = map_size(_text(body, "size"), provider)
    asked_quality = _text(body, "quality")
    quality = map_quality(asked_quality, provider)
    fields: dict[str, Any] = {
        "prompt": prompt,
        "provider": provider,
        "model": provider_model(model, provider, edit=edit),
        "quality": quality,
        "size": size,
        "resolution": resolution,
        "metadata": {"openai_user": user} if user is not None else None,
    }
    # GPT image models always answer b64_json; DALL·E defaults to URLs.
    default_format = "url" if model is not None and model.startswith("dall-e") else "b64_json"
    echo = {"quality": quality} if quality in ("low", "medium", "high") else {}
    return ImagesCall(
        fields={k: v for k, v in fields.items() if v is not None},
        n=n or 1,
        response_format=response_format or default_format,
        echo=echo,
    )


def job_key(key: str | None, index: int) -> str | None:
    """The idempotency key of the ``index``-th job of a call keyed ``key``: ``key``, ``key#1``, ..."""
    if key is None:
        return None
    return key if index == 0 else f"{key}#{index}"


def to_requests(
    call: ImagesCall,
    *,
    tenant: str,
    idempotency_key: str | None = None,
    image_files: Sequence[str] = (),
    allow_private_urls: bool = False,
) -> list[ImageRequest]:
    """One validated request per image; a core field error becomes a 400 naming the OpenAI parameter."""
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 190:
        raise invalid("the Idempotency-Key header must be 1 to 190 characters", None, "invalid_idempotency_key")
    if idempotency_key is not None and "#" in idempotency_key:
        # `#` separates the per-image keys (`key#1`): a client key with one could name another call's image.
        raise invalid("the Idempotency-Key header must not contain '#'", None, "invalid_idempotency_key")
    requests = []
    for index in range(call.n):
        data = {**call.fields, "tenant": tenant, "idempotency_key": job_key(idempotency_key, index)}
        if image_files:
            data["image_files"] = list(image_files)
        try:
            requests.append(ImageRequest.from_dict(data, allow_private_urls=allow_private_urls))
        except RequestInvalid as exc:
            first = exc.errors[0]
            name = first.field.split(".")[0]
            param = _PARAMS.get(name, name)
            raise invalid("; ".join(str(e) for e in exc.errors), param) from None
    return requests


def _held(job: Job, retry_after_s: int) -> OpenAICompatError:
    headers = {"Retry-After": str(retry_after_s), "x-should-retry": "false"}
    text = (
        f"job {job.id} is held: the provider key is paused ({job.error_kind}: {job.error_message or 'no detail'});"
        f" it runs once an operator resumes the key. Follow it at /v1/jobs/{job.id}, or cancel it."
    )
    if job.error_kind == ErrorKind.INSUFFICIENT_CREDITS:
        return OpenAICompatError(429, text, type="insufficient_quota", code="insufficient_quota", headers=headers)
    return OpenAICompatError(503, text, type="server_error", code=job.error_kind or "held", headers=headers)


#: Kinds caused upstream: a bad gateway. Anything else (deadline, cancel) is our own 500.
_UPSTREAM_KINDS = frozenset(
    {
        ErrorKind.GENERATION_FAILED,
        ErrorKind.UPSTREAM_UNAVAILABLE,
        ErrorKind.RATE_LIMITED,
        ErrorKind.SUBMIT_OUTCOME_UNKNOWN,
        ErrorKind.RESULT_UNAVAILABLE,
        ErrorKind.AUTH_FAILED,
        ErrorKind.INSUFFICIENT_CREDITS,
    }
)


def failure(jobs: Sequence[Job], *, wait_s: float, keyed: bool, retry_after_s: int = 60) -> OpenAICompatError | None:
    """The error a call answers with when not every job succeeded, or None.

    The caller's own fault first (invalid, moderation), then a held key, then the wait running out, then
    other endings. After a timeout the jobs go on; unkeyed, the SDK is told not to retry (a retry without
    an Idempotency-Key would queue the images again).
    """
    failed = [j for j in jobs if j.status in (JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELED)]
    for job in failed:
        if job.error_kind == ErrorKind.CONTENT_REJECTED:
            reason = job.error_message or "Your request was rejected by the safety system"
            return invalid(f"{reason} (job {job.id})", None, "moderation_blocked")
        if job.error_kind == ErrorKind.INVALID_REQUEST:
            return invalid(f"job {job.id}: {job.error_message or 'invalid request'}", None, "invalid_request")
    held = [j for j in jobs if j.status == JobStatus.HELD]
    if held:
        return _held(held[0], retry_after_s)
    waiting = [j.id for j in jobs if j.status not in _ENDED]
    if waiting:
        ids = ", ".join(waiting)
        message = (
            f"the image(s) were not ready within {wait_s:g} s; job(s) {ids} go on: follow GET /v1/jobs/{waiting[0]}"
        )
        headers = {"Location": f"/v1/jobs/{waiting[0]}"}
        if not keyed:
            headers["x-should-retry"] = "false"
        return OpenAICompatError(504, message, type="server_error", code="timeout", headers=headers)
    if failed:
        job = failed[0]
        kind = job.error_kind or job.status
        status = 502 if kind in _UPSTREAM_KINDS else 500
        message = f"job {job.id} {job.status}: {kind}: {job.error_message or 'no detail'}"
        return OpenAICompatError(status, message, type="server_error", code=kind)
    return None


_ENDED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELED, JobStatus.HELD})


def entries(job: Job) -> list[tuple[int, dict[str, Any]]]:
    """The job's stored result entries with their place in ``result`` (the ``n`` of
    ``/v1/jobs/{id}/images/{n}``); an entry without a stored copy is not an answer."""
    result = job.result if isinstance(job.result, list) else []
    return [(n, e) for n, e in enumerate(result) if isinstance(e, dict) and isinstance(e.get("path"), str)]


def echo_of(call: ImagesCall, first: Mapping[str, Any] | None) -> dict[str, str]:
    """``output_format``, ``size`` and ``quality`` as OpenAI echoes them, from the first stored image."""
    out = dict(call.echo)
    if first is not None:
        fmt = _FORMATS.get(str(first.get("content_type")))
        if fmt:
            out["output_format"] = fmt
        width, height = first.get("width"), first.get("height")
        if isinstance(width, int) and isinstance(height, int):
            out["size"] = f"{width}x{height}"
    return out


def total_usage(jobs: Sequence[Job]) -> dict[str, Any] | None:
    """The jobs' token usage summed (numbers, and numbers one level down), if every job reported one."""
    usages = [j.usage for j in jobs]
    if not usages or not all(isinstance(u, dict) for u in usages):
        return None
    total: dict[str, Any] = {}
    for usage in usages:
        assert isinstance(usage, dict)
        for name, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[name] = total.get(name, 0) + value
            elif isinstance(value, dict):
                inner = total.setdefault(name, {})
                if isinstance(inner, dict):
                    for k, v in value.items():
                        if isinstance(v, int) and not isinstance(v, bool):
                            inner[k] = inner.get(k, 0) + v
    return total
