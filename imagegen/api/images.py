"""Result downloads: ``GET /v1/jobs/{id}/images/{n}`` (README, 'Using it').

``n`` is the 0-based place of the image in the job's ``result`` list, the same list the job JSON shows
(its entries' ``href``). The store decides how the bytes reach the client (``ResultStore.locate``): a
local file is streamed from disk, never read whole; an S3 object is a 302 to a presigned URL. The
``ETag`` is the entry's sha256, so ``If-None-Match`` is answered (304) from the job row alone.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Response, status
from fastapi.responses import FileResponse, RedirectResponse

from imagegen.api.auth import Caller, CallerDep
from imagegen.api.schemas import Message
from imagegen.api.state import RuntimeDep
from imagegen.api.tenancy import own_job
from imagegen.runtime import Runtime
from imagegen.storage import LocalFile

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
_ETAG = {"description": "the image's sha256, quoted", "schema": {"type": "string"}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stored image (Range requests are honoured)",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _IMAGE_TYPES},
        "headers": {"ETag": _ETAG},
    },
    302: {
        "description": "Stored in S3: `Location` is a presigned URL valid IMAGEGEN_S3_PRESIGN_S seconds",
        "headers": {"Location": {"schema": {"type": "string"}}, "ETag": _ETAG},
    },
    304: {"description": "`If-None-Match` names the image's ETag", "headers": {"ETag": _ETAG}},
    404: {"model": Message, "description": "No such job, no such image, or the image is not stored yet"},
}

Index = Annotated[int, Path(ge=0, description="0-based place of the image in the job's `result`")]
IfNoneMatch = Annotated[str | None, Header(description="an ETag from an earlier download, or *")]


def _not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (weak comparison, as RFC 9110 asks for it)."""
    if if_none_match is None:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in (t.removeprefix("W/") for t in tags)


def _stored_entry(rt: Runtime, caller: Caller, job_id: str, n: int) -> dict[str, Any]:
    """The job's ``n``-th result entry, if the job exists (and is the caller's tenant's) and that image
    is stored; 404 otherwise."""
    job = own_job(rt, caller, job_id)
    entries = job.result if isinstance(job.result, list) else []
    entry = entries[n] if n < len(entries) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise _not_found("image")
    return entry


@router.get(
    "/jobs/{job_id}/images/{n}",
    response_class=Response,
    summary="Download one result image",
    responses=_RESPONSES,
)
def get_image(job_id: str, n: Index, rt: RuntimeDep, caller: CallerDep, if_none_match: IfNoneMatch = None) -> Response:
    """The stored image: streamed from the results directory, or a 302 to a presigned S3 URL."""
    entry = _stored_entry(rt, caller, job_id, n)
    sha = entry.get("sha256")
    # Only a real digest becomes a header: a tampered row must not inject header syntax.
    headers = {"ETag": f'"{sha}"'} if isinstance(sha, str) and _SHA256.fullmatch(sha) else {}
    if headers and etag_matches(if_none_match, headers["ETag"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    location = rt.store.locate(entry["path"], job_id=job_id)
    if location is None:
        # Gone from disk, or a path this store does not own (a crafted row): never served.
        log.warning("job %s: result %d is not servable from this store (%.200r)", job_id, n, entry["path"])
        raise _not_found("image")
    if isinstance(location, LocalFile):
        content_type = entry.get("content_type")
        media_type = content_type if content_type in _IMAGE_TYPES else "application/octet-stream"
        return FileResponse(location.path, media_type=media_type, headers=headers, stat_result=location.stat)
    # The URL expires: a cache must not keep the redirect longer than the URL works.
    return RedirectResponse(location.url, status.HTTP_302_FOUND, headers={**headers, "Cache-Control": "no-store"})


# HEAD answers what GET would, without the body (FileResponse sends only the headers for HEAD).
router.add_api_route(
    "/jobs/{job_id}/images/{n}", get_image, methods=["HEAD"], response_class=Response, include_in_schema=False
)
