"""The OpenAI-compatible front door: ``POST /v1/images/generations`` and ``POST /v1/images/edits``.

An OpenAI Images API call becomes one job per image (a batch for ``n`` > 1) on
``IMAGEGEN_OPENAI_COMPAT_PROVIDER``, so every guarantee of the queue holds (retries, limits, holds,
fallback, stored results). The route waits up to ``IMAGEGEN_OPENAI_COMPAT_WAIT_S`` without holding a
thread (``api.waiting.settle``), then answers in OpenAI's shape, or with an error in OpenAI's shape.
What a body or an ending means is decided in ``api.openai_shapes``; here are the reads and writes.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.settings import Settings
from imagegen.api.auth import OPEN, Caller, bearer_scheme, identify
from imagegen.api.feed import ChangeFeed
from imagegen.api.openai_schemas import EDIT_BODY, GENERATE_BODY, ImagesResponse, OpenAIErrorBody
from imagegen.api.openai_shapes import (
    MAX_IMAGES,
    ImagesCall,
    OpenAICompatError,
    echo_of,
    entries,
    failure,
    invalid,
    parse_call,
    to_requests,
    total_usage,
)
from imagegen.api.state import FeedDep, PublisherDep, RuntimeDep, SettingsDep
from imagegen.api.validation import json_body
from imagegen.api.waiting import settle
from imagegen.errors import IdempotencyConflict
from imagegen.messages import Publisher
from imagegen.producer import QueuedJob, create_batch, create_job, publish_submits
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.storage import reference_key
from imagegen.store.models import Job

router = APIRouter(prefix="/v1/images", tags=["OpenAI-compatible"])

#: Retry-After of a held key when no pause probe is configured (an operator must act: no real estimate).
HELD_RETRY_AFTER_S = 300

_ERROR = {"model": OpenAIErrorBody}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "Invalid input (`param` names the field), or `code: moderation_blocked`"},
    401: {**_ERROR, "description": "Missing or invalid bearer token"},
    409: {**_ERROR, "description": "The Idempotency-Key was used for a different request"},
    429: {**_ERROR, "description": "The provider key is held for credits (`insufficient_quota`); `Retry-After`"},
    500: {**_ERROR, "description": "The job ended otherwise (`code` is its error kind)"},
    502: {**_ERROR, "description": "The provider failed the job (`code` is its error kind)"},
    503: {**_ERROR, "description": "The provider key is held for another reason (`code`: auth_failed); `Retry-After`"},
    504: {**_ERROR, "description": "Not ready within IMAGEGEN_OPENAI_COMPAT_WAIT_S; the message names the job ids"},
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="The same key (per tenant) never queues the images twice: jobs `key`, `key#1`, ...",
    ),
]


#: What ``create_app`` adds to these routes when tokens are configured: the bearer scheme, for the docs
#: (it never refuses anything itself; ``openai_caller`` answers the 401 in OpenAI's shape).
DOCUMENTED_AUTH = [Depends(bearer_scheme)]


def openai_caller(request: Request) -> Caller:
    """The caller of a bearer token, or OpenAI's 401 (these routes answer in OpenAI's shape only)."""
    settings: Settings = request.app.state.api.settings
    if not settings.auth_enabled:
        return OPEN
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    bearer = scheme.lower() == "bearer" and token
    caller = identify(token, settings.token_tenants, settings.admin_tokens) if bearer else None
    if caller is None:
        raise OpenAICompatError(
            401,
            "Incorrect API key provided: use one of the tokens in IMAGEGEN_API_TOKENS as the api_key.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


OpenAICaller = Annotated[Caller, Depends(openai_caller)]


async def answer_error(_: Request, exc: Exception) -> JSONResponse:
    """The exception handler of ``OpenAICompatError``."""
    assert isinstance(exc, OpenAICompatError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


@router.post(
    "/generations",
    response_model=ImagesResponse,
    summary="Create images (OpenAI Images API)",
    responses=_RESPONSES,
    openapi_extra=GENERATE_BODY,
)
async def generations(
    request: Request,
    rt: RuntimeDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    feed: FeedDep,
    caller: OpenAICaller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """OpenAI's ``images.generate``: one job per image, answered when they are done (or as an error)."""
    try:
        body = await json_body(request)
    except RequestValidationError as exc:
        raise invalid(str(exc.errors()[0].get("msg", "the body is not valid JSON")), None) from None
    call = parse_call(body, settings.imagegen_openai_compat_provider)
    requests = to_requests(
        call,
        tenant=caller.tenant,
        idempotency_key=idempotency_key,
        allow_private_urls=settings.http.allow_private_urls,
    )
    return await _run(request, rt, publisher, settings, feed, call, requests, keyed=idempotency_key is not None)


@router.post(
    "/edits",
    response_model=ImagesResponse,
    summary="Edit images (OpenAI Images API, multipart)",
    responses=_RESPONSES,
    openapi_extra=EDIT_BODY,
)
async def edits(
    request: Request,
    rt: RuntimeDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    feed: FeedDep,
    caller: OpenAICaller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """OpenAI's ``images.edit``: the uploads are stored, and every job of the call refers to them."""
    form = await _form(request)
    files = [f for f in (*form.getlist("image"), *form.getlist("image[]"))]
    texts = {k: v for k, v in form.multi_items() if k not in ("image", "image[]", "mask")}
    if any(not isinstance(v, str) for v in texts.values()):
        name = next(k for k, v in texts.items() if not isinstance(v, str))
        raise invalid(f"{name} must be a text field, not a file", name)
    provider = settings.imagegen_openai_compat_provider
    call = parse_call(texts, provider, edit=True, form=True)
    if form.get("mask") is not None:
        raise invalid(f"mask is not supported on provider {provider}: send the image alone", "mask")
    uploads = await _uploads(files)
    if provider == "apidot" and (not settings.imagegen_public_url or settings.upload_token_key is None):
        # APIDot fetches reference images itself, from a URL of ours under the public URL, signed.
        raise invalid(
            "edits on apidot need IMAGEGEN_PUBLIC_URL and IMAGEGEN_CALLBACK_TOKEN_SECRET set (APIDot fetches"
            " the images from us, by signed URL)",
            "image",
        )
    requests = to_requests(
        call,
        tenant=caller.tenant,
        idempotency_key=idempotency_key,
        image_files=[key for key, _, _ in uploads],
        allow_private_urls=settings.http.allow_private_urls,
    )
    await run_in_threadpool(_store_uploads, rt, uploads)
    return await _run(request, rt, publisher, settings, feed, call, requests, keyed=idempotency_key is not None)


async def _form(request: Request) -> FormData:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise invalid("edits take a multipart/form-data body", None)
    try:
        return await request.form(max_files=MAX_IMAGES + 1, max_fields=64)
    except StarletteHTTPException as exc:  # a malformed multipart body
        raise invalid(f"the multipart body is malformed: {exc.detail}", None) from None


async def _uploads(files: Sequence[Any]) -> list[tuple[str, bytes, str]]:
    """The uploaded images as ``(storage key, bytes, content type)``; a 400 naming ``image`` otherwise."""
    if not files:
        raise invalid("image is required: one or more image files", "image")
    if len(files) > MAX_IMAGES:
        raise invalid(f"at most {MAX_IMAGES} images", "image")
    out = []
    for upload in files:
        if not isinstance(upload, UploadFile):
            raise invalid("image must be a file", "image")
        data = await upload.read()
        try:
            key, content_type = reference_key(data)
        except ValueError:
            raise invalid(
                f"image {upload.filename or ''}: must be a PNG, JPEG or WebP image".strip(), "image"
            ) from None
        out.append((key, data, content_type))
    return out


def _store_uploads(rt: Runtime, uploads: Sequence[tuple[str, bytes, str]]) -> None:
    # Content-addressed: storing the same image twice writes the same key.
    for key, data, content_type in uploads:
        rt.store.put(key, data, content_type)


def _queue(rt: Runtime, publisher: Publisher, requests: Sequence[ImageRequest]) -> list[str]:
    """Insert the jobs (one, or a batch) and publish their submits: their ids (a repeated key: the same)."""
    fresh: Sequence[Job | QueuedJob]
    try:
        if len(requests) == 1:
            job, created = create_job(rt, requests[0])
            ids, fresh = [job.id], [job] if created else []
        else:
            _, queued = create_batch(rt, requests)
            ids, fresh = [j.id for j in queued], [j for j in queued if j.created]
    except IdempotencyConflict:
        raise OpenAICompatError(
            409,
            "this Idempotency-Key was used for a different request",
            code="idempotency_key_reused",
            headers={"x-should-retry": "false"},
        ) from None
    publish_submits(publisher, fresh)
    return ids


async def _run(
    request: Request,
    rt: Runtime,
    publisher: Publisher,
    settings: Settings,
    feed: ChangeFeed,
    call: ImagesCall,
    requests: Sequence[ImageRequest],
    *,
    keyed: bool,
) -> JSONResponse:
    ids = await run_in_threadpool(_queue, rt, publisher, requests)
    wait_s = settings.imagegen_openai_compat_wait_s
    jobs = await settle(feed, rt, ids, wait_s, gone=request.is_disconnected)
    if len(jobs) < len(ids):  # purged while we waited
        raise OpenAICompatError(500, f"job(s) {', '.join(ids)} were deleted while waiting", type="server_error")
    probe = settings.imagegen_pause_probe_s
    error = failure(jobs, wait_s=wait_s, keyed=keyed, retry_after_s=int(probe) if probe >= 1 else HELD_RETRY_AFTER_S)
    if error is not None:
        raise error
    base = (settings.imagegen_public_url or str(request.base_url)).rstrip("/")
    content = await run_in_threadpool(_answer, rt, jobs, call, base)
    return JSONResponse(content)


def _answer(rt: Runtime, jobs: Sequence[Job], call: ImagesCall, base: str) -> dict[str, Any]:
    """The ``ImagesResponse``: each stored image as ``b64_json`` (our stored copy) or ``url`` (ours)."""
    data: list[dict[str, Any]] = []
    stored = [(job, index, entry) for job in jobs for index, entry in entries(job)]
    for job, index, entry in stored:
        if call.response_format == "url":
            data.append({"url": f"{base}/v1/jobs/{job.id}/images/{index}"})
        else:
            data.append({"b64_json": _stored_b64(rt, job, index, entry)})
    if not data:
        raise OpenAICompatError(502, "the jobs succeeded without a stored image", type="server_error")
    content: dict[str, Any] = {"created": int(time.time()), "data": data}
    content.update(echo_of(call, stored[0][2]))
    usage = total_usage(jobs)
    if usage is not None:
        content["usage"] = usage
    return content


def _stored_b64(rt: Runtime, job: Job, index: int, entry: dict[str, Any]) -> str:
    raw = rt.store.read(str(entry["path"]), job_id=job.id)  # the recorded path, checked as a download is
    if raw is None:
        raise OpenAICompatError(502, f"job {job.id}: stored image {index} is gone", type="server_error")
    if entry.get("sha256") not in (None, hashlib.sha256(raw).hexdigest()):
        raise OpenAICompatError(
            500, f"job {job.id}: stored image {index} does not match its sha256", type="server_error"
        )
    return base64.b64encode(raw).decode("ascii")
