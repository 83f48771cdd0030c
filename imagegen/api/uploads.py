"""Uploaded reference images served to providers that fetch them by URL: ``GET /uploads/{name}?token=``.

A provider cannot carry our bearer tokens, so each URL is signed for its one upload
(``storage.upload_url``). A wrong token, an unknown name and a missing file are the same 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from imagegen.api.schemas import Message
from imagegen.api.state import RuntimeDep, SettingsDep
from imagegen.request import UPLOAD_KEY
from imagegen.storage import UPLOADS_ROUTE, upload_token_ok

router = APIRouter(prefix=UPLOADS_ROUTE)

_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The uploaded image",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _TYPES.values()},
    },
    404: {"model": Message, "description": "No such upload, or not this upload's token"},
}


@router.get("/{name}", response_class=Response, summary="A reference image, for the provider", responses=_RESPONSES)
def get_upload(
    name: str, rt: RuntimeDep, settings: SettingsDep, token: Annotated[str | None, Query(max_length=100)] = None
) -> Response:
    """The upload's bytes; content-addressed, so they never change (cacheable for good)."""
    key = f"uploads/{name}"
    signing = settings.upload_token_key  # none configured: no token is valid, so nothing is served
    if signing is None or not UPLOAD_KEY.match(key) or not upload_token_ok(signing, key, token):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="upload not found")
    try:
        data = rt.store.get(key)
    except OSError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="upload not found") from None
    media_type = _TYPES[name.rsplit(".", 1)[1]]
    return Response(data, media_type=media_type, headers={"Cache-Control": "public, max-age=31536000, immutable"})
