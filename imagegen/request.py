"""Image requests and their validation, before anything is queued.

``ImageRequest`` validates itself on construction and raises ``RequestInvalid`` listing every bad field,
so nothing invalid is ever queued or sent upstream.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from imagegen.constants import PRIORITIES, PROVIDERS
from imagegen.errors import FieldError, RequestInvalid
from imagegen.jsondepth import MAX_JSON_DEPTH, too_deep
from imagegen.routes import UPLOAD_PROVIDERS, NoMapping, hop_request

QUALITIES = ("low", "medium", "high")
APIDOT_SIZES = ("auto", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
OPENAI_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
RESOLUTIONS = ("1K", "2K", "4K")
APIDOT_MODELS_WITHOUT_IMAGES = ("gpt-image-2",)
EDIT_MODELS = ("gpt-image-2-edit",)

MAX_PROMPT = 32_000
MAX_IMAGE_URLS = 16
MAX_URL = 2_048
MAX_METADATA_BYTES = 16_384
MAX_DEADLINE_S = 7 * 86_400
MAX_IDEMPOTENCY_KEY = 200
MAX_TENANT = 64
#: The tenant of a job nobody named one for (no tokens configured, a bare token, a CLI line without one).
DEFAULT_TENANT = "default"
#: A tenant is a short identifier: it appears in URLs' filters, logs and the token list (``tenant:token``).
TENANT_RE = re.compile(rf"^[A-Za-z0-9_.-]{{1,{MAX_TENANT}}}\Z")
TENANT_RULE = f"must be 1 to {MAX_TENANT} letters, digits, '_', '-' or '.'"

_WXH = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})\Z")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,199}\Z")


@dataclass(frozen=True, kw_only=True)
class ImageRequest:
    """One validated image-generation request. Construct it with keywords or ``from_dict``."""

    prompt: str
    provider: str = "apidot"
    model: str = "gpt-image-2"
    quality: str | None = None
    size: str | None = None
    resolution: str | None = None
    image_urls: Sequence[str] | None = None
    deadline_s: float | None = None
    idempotency_key: str | None = None
    priority: str = "interactive"
    callback_url: str | None = None
    metadata: dict[str, Any] | None = None
    fallback: Sequence[str] | None = None
    #: Whose job this is (``DEFAULT_TENANT`` when None). Not part of what is asked: ``to_dict`` leaves it
    #: out, the job row keeps it in its own column, and the HTTP API takes it from the caller's token.
    tenant: str | None = None
    #: Local reference images uploaded by ``imagegen submit --image-file``: content-addressed keys in our
    #: storage (``uploads/<sha256>.<ext>``), never paths, so a request cannot make a worker read a file.
    image_files: Sequence[str] | None = None
    #: Loopback/private http URLs are accepted only when the deployment allows them (tests, demo).
    allow_private_urls: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalise "absent" spellings before validating, so an empty list counts as absent.
        if self.image_urls is not None and not isinstance(self.image_urls, str):
            object.__setattr__(self, "image_urls", tuple(self.image_urls))
        if self.fallback is not None and not isinstance(self.fallback, str):
            object.__setattr__(self, "fallback", tuple(self.fallback))
        if self.image_files is not None and not isinstance(self.image_files, str):
            object.__setattr__(self, "image_files", tuple(self.image_files) or None)
        if self.image_urls == ():
            object.__setattr__(self, "image_urls", None)
        if self.fallback == ():
            object.__setattr__(self, "fallback", None)
        errors = _validate(self)
        if errors:
            raise RequestInvalid(errors)

    @classmethod
    def from_dict(cls, data: Any, *, allow_private_urls: bool = False, **defaults: Any) -> ImageRequest:
        """Validate a JSON-shaped request (unknown fields and wrong types are errors naming the field)."""
        if not isinstance(data, Mapping):
            raise RequestInvalid([FieldError("request", "must be a JSON object")])
        known = {f.name for f in fields(cls)} - {"allow_private_urls"}
        errors = [FieldError(str(k), "unknown field") for k in data if k not in known]
        values: dict[str, Any] = {**defaults}
        for name, value in data.items():
            if name not in known:
                continue
            problem = _type_problem(name, value)
            if problem:
                errors.append(FieldError(name, problem))
            elif value is not None:
                values[name] = value
        if "prompt" not in values and not any(e.field == "prompt" for e in errors):
            errors.append(FieldError("prompt", "is required"))
        if errors:
            raise RequestInvalid(errors)
        try:
            return cls(allow_private_urls=allow_private_urls, **values)
        except RequestInvalid as exc:
            raise RequestInvalid(errors + exc.errors) from None

    def to_dict(self) -> dict[str, Any]:
        """The request as stored and shown (``None`` fields dropped; no secrets exist in a request)."""
        # Field by field: dataclasses.asdict deep-copies every string, which cost a 10,000-line batch
        # more than its INSERT did.
        out: dict[str, Any] = {}
        for name in _ASKED:
            value = getattr(self, name)
            if value is None:
                continue
            if name in _SEQUENCES:
                value = list(value)
            elif name == "metadata":
                value = copy.deepcopy(value)  # the caller's JSON object: what is stored never shares it
            out[name] = value
        return out


#: Fields that say who asks or how to validate, not what is asked: never stored in a job's ``request``.
_NOT_ASKED = ("allow_private_urls", "tenant")
_ASKED = tuple(f.name for f in fields(ImageRequest) if f.name not in _NOT_ASKED)
_SEQUENCES = frozenset({"image_urls", "fallback", "image_files"})

_STRING_FIELDS = (
    "prompt",
    "provider",
    "model",
    "quality",
    "size",
    "resolution",
    "idempotency_key",
    "priority",
    "callback_url",
    "tenant",
)


def _type_problem(name: str, value: Any) -> str | None:
    if value is None:
        return "is required" if name == "prompt" else None
    if name in _STRING_FIELDS and not isinstance(value, str):
        return "must be a string"
    if name in ("image_urls", "fallback", "image_files") and (
        not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value)
    ):
        return "must be a list of strings"
    if name == "deadline_s" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "must be a number of seconds"
    if name == "metadata" and not isinstance(value, Mapping):
        return "must be a JSON object"
    return None


def _validate(req: ImageRequest) -> list[FieldError]:
    errors: list[FieldError] = []
    err = errors.append
    for name in (*_STRING_FIELDS, "image_urls", "fallback", "image_files"):
        value = getattr(req, name)
        texts = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else []
        if any(isinstance(t, str) and "\x00" in t for t in texts):
            err(FieldError(name, "must not contain NUL characters"))  # PostgreSQL text cannot hold them
        elif not all(_is_utf8(t) for t in texts if isinstance(t, str)):
            # Lone surrogates (a by-name sender's JSON escapes, a non-UTF-8 argv): no JSON answer can hold them.
            err(FieldError(name, "must be valid UTF-8 text"))
    if req.provider not in PROVIDERS:
        err(FieldError("provider", f"must be one of {', '.join(PROVIDERS)}"))
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        err(FieldError("prompt", "must be a non-empty string"))
    elif len(req.prompt) > MAX_PROMPT:
        err(FieldError("prompt", f"must be at most {MAX_PROMPT} characters (got {len(req.prompt)})"))
    if not isinstance(req.model, str) or not _MODEL.match(req.model):
        err(FieldError("model", "must be a model id such as gpt-image-2"))
    if req.priority not in PRIORITIES:
        err(FieldError("priority", "must be interactive or batch"))
    errors += _validate_quality_size(req)
    errors += _validate_images(req)
    if req.deadline_s is not None and not (0 < req.deadline_s <= MAX_DEADLINE_S and math.isfinite(req.deadline_s)):
        err(FieldError("deadline_s", f"must be between 0 and {MAX_DEADLINE_S} seconds"))
    if req.idempotency_key is not None and not (0 < len(req.idempotency_key) <= MAX_IDEMPOTENCY_KEY):
        err(FieldError("idempotency_key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters"))
    if req.tenant is not None and not is_tenant(req.tenant) and not any(e.field == "tenant" for e in errors):
        err(FieldError("tenant", TENANT_RULE))
    if req.callback_url is not None:
        problem = url_problem(req.callback_url, allow_http=req.allow_private_urls)
        if problem:
            err(FieldError("callback_url", problem))
    errors += _validate_metadata(req.metadata)
    errors += _validate_fallback(req, hops=not errors)
    return errors


def is_tenant(value: object) -> bool:
    """Whether ``value`` is a valid tenant name (see ``TENANT_RE``)."""
    return isinstance(value, str) and TENANT_RE.match(value) is not None


def _validate_fallback(req: ImageRequest, *, hops: bool = True) -> list[FieldError]:
    """The route's names, then (``hops``: the request itself is valid) each hop as it would be sent."""
    if req.fallback is None:
        return []
    if isinstance(req.fallback, str):
        return [FieldError("fallback", "must be a list of providers")]
    errors = []
    for i, name in enumerate(req.fallback):
        if name not in PROVIDERS:
            errors.append(FieldError(f"fallback.{i}", f"must be one of {', '.join(PROVIDERS)}"))
        elif name == req.provider or list(req.fallback).index(name) != i:
            errors.append(FieldError(f"fallback.{i}", "repeats a provider already in the route"))
    if errors or not hops:
        return errors
    # Each hop is mapped from the one before, exactly as the switch does it (imagegen.routes).
    current = req.to_dict()
    for i, name in enumerate(req.fallback):
        try:
            mapped = hop_request(current, name)
            ImageRequest(
                allow_private_urls=req.allow_private_urls, **{k: v for k, v in mapped.items() if k != "fallback"}
            )
        except NoMapping as exc:
            errors.append(FieldError(f"fallback.{i}", f"{name} cannot carry this request: {exc}"))
            continue
        except RequestInvalid as exc:
            why = "; ".join(str(e) for e in exc.errors)
            errors.append(FieldError(f"fallback.{i}", f"{name} cannot carry this request: {why}"))
            continue
        current = mapped
    return errors


def _validate_quality_size(req: ImageRequest) -> list[FieldError]:
    errors: list[FieldError] = []
    qualities = (*QUALITIES, "auto") if req.provider == "openai" else QUALITIES
    if req.quality is not None and req.quality not in qualities:
        errors.append(FieldError("quality", f"must be one of {', '.join(qualities)}"))
    if req.provider == "apidot":
        custom = req.size is not None and _WXH.match(req.size) is not None
        if req.size is not None and req.size not in APIDOT_SIZES and not custom:
            errors.append(FieldError("size", f"must be one of {', '.join(APIDOT_SIZES)} or WxH"))
        if req.resolution is not None and req.resolution not in RESOLUTIONS:
            errors.append(FieldError("resolution", "must be 1K, 2K or 4K"))
        elif custom and req.resolution not in ("2K", "4K"):
            errors.append(FieldError("resolution", "a custom WxH size needs resolution 2K or 4K"))
    else:
        if req.resolution is not None:
            errors.append(FieldError("resolution", f"is not supported by provider {req.provider}"))
        if req.size is not None:
            problem = openai_size_problem(req.size, req.model)
            if problem:
                errors.append(FieldError("size", problem))
    return errors


def openai_size_problem(size: str, model: str) -> str | None:
    """OpenAI's size rules: named sizes, or for gpt-image-2 a bounded custom WxH."""
    if size in OPENAI_SIZES:
        return None
    match = _WXH.match(size)
    if match is None or not model.startswith("gpt-image-2"):
        return f"must be one of {', '.join(OPENAI_SIZES)}" + (" or WxH" if model.startswith("gpt-image-2") else "")
    w, h = int(match[1]), int(match[2])
    if w % 16 or h % 16:
        return "both sides must be multiples of 16"
    if max(w, h) > 3840:
        return "the long edge must be at most 3840"
    if max(w, h) > 3 * min(w, h):
        return "the aspect ratio must be at most 3:1"
    if not 655_360 <= w * h <= 8_294_400:
        return "must have between 655,360 and 8,294,400 pixels"
    return None


#: Providers that take uploaded files (openai as multipart parts, apidot as signed URLs of ours).
FILE_PROVIDERS = UPLOAD_PROVIDERS
UPLOAD_KEY = re.compile(r"^uploads/[0-9a-f]{64}\.(png|jpg|webp)\Z")


def _validate_files(req: ImageRequest) -> list[FieldError]:
    files = req.image_files
    if files is None:
        return []
    if isinstance(files, str):
        return [FieldError("image_files", "must be a list of uploaded files")]
    errors = [
        FieldError(f"image_files.{i}", "is not an uploaded file key")
        for i, key in enumerate(files)
        if not isinstance(key, str) or not UPLOAD_KEY.match(key)
    ]
    if req.provider not in FILE_PROVIDERS:
        errors.append(
            FieldError(
                "image_files",
                f"provider {req.provider} takes image URLs only: serve the files over https and pass image_urls",
            )
        )
    if req.image_urls:
        errors.append(FieldError("image_files", "give image_urls or image_files, not both"))
    return errors


def _validate_images(req: ImageRequest) -> list[FieldError]:
    errors: list[FieldError] = _validate_files(req)
    urls = req.image_urls
    if isinstance(urls, str):
        return [FieldError("image_urls", "must be a list of URLs")]
    if urls is not None:
        if len(urls) > MAX_IMAGE_URLS:
            errors.append(FieldError("image_urls", f"at most {MAX_IMAGE_URLS} images"))
        for i, url in enumerate(urls):
            problem = url_problem(url, allow_http=False)
            if problem:
                errors.append(FieldError(f"image_urls.{i}", problem))
    if req.provider == "apidot":
        if req.model in EDIT_MODELS and not urls and not req.image_files:
            errors.append(FieldError("image_urls", f"at least one image is required for {req.model}"))
        if req.model in APIDOT_MODELS_WITHOUT_IMAGES and urls:
            errors.append(FieldError("image_urls", f"is not allowed for {req.model} (use gpt-image-2-edit)"))
        if req.model in APIDOT_MODELS_WITHOUT_IMAGES and req.image_files:
            errors.append(FieldError("image_files", f"is not allowed for {req.model} (use gpt-image-2-edit)"))
    return errors


def url_problem(url: str, *, allow_http: bool) -> str | None:
    """Why ``url`` is not an acceptable absolute URL (https, or http when ``allow_http``), or None."""
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        return "must be an https URL" if not allow_http else "must be an http(s) URL"
    if not parts.hostname or any(c.isspace() for c in url):
        return "is not a valid URL"
    return None


def callback_url_problem(value: object, *, allow_private_urls: bool) -> str | None:
    """Why ``value`` cannot be a batch's ``callback_url``, or None: the rules of a request's own
    ``callback_url`` (text any store can hold, then ``url_problem``)."""
    if not isinstance(value, str):
        return "must be a string"
    if "\x00" in value:
        return "must not contain NUL characters"
    if not _is_utf8(value):
        return "must be valid UTF-8 text"
    return url_problem(value, allow_http=allow_private_urls)


def check_callback_url(value: str | None, *, allow_private_urls: bool) -> None:
    """Raise ``RequestInvalid`` naming ``callback_url`` unless ``value`` is None or a valid callback URL."""
    problem = None if value is None else callback_url_problem(value, allow_private_urls=allow_private_urls)
    if problem:
        raise RequestInvalid([FieldError("callback_url", problem)])


def _validate_metadata(metadata: Any) -> list[FieldError]:
    if metadata is None:
        return []
    if not isinstance(metadata, Mapping):
        return [FieldError("metadata", "must be a JSON object")]
    # Checked first and without recursion: json.dumps, copies and pickling all recurse per level.
    if too_deep(metadata, MAX_JSON_DEPTH) is not None:
        return [FieldError("metadata", "nested too deeply")]
    try:
        size = len(json.dumps(metadata, allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError):
        return [FieldError("metadata", "must be JSON-serialisable")]
    if not _is_utf8(json.dumps(metadata, ensure_ascii=False)):
        return [FieldError("metadata", "must be valid UTF-8 text")]
    if size > MAX_METADATA_BYTES:
        return [FieldError("metadata", f"must be at most {MAX_METADATA_BYTES} bytes of JSON")]
    return []


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeError:
        return False
    return True
