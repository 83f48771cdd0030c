"""The OpenAPI documentation of the OpenAI-compatible routes: their bodies, answers and error shape.

Documentation only: bodies are read and checked by ``api.openai_shapes`` (and the one validator,
``ImageRequest``), so these models never validate a request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Size = str
_SIZE = "`auto`, `1024x1024`, `1536x1024`, `1024x1536`, or WxH (multiples of 16, at most 3:1, ≤ 3840)"
_QUALITY = "`low`, `medium`, `high`, `auto`; DALL·E's `standard`/`hd` are taken as `medium`/`high`"


class ImagesGenerateRequest(BaseModel):
    """OpenAI's ``images.generate`` body."""

    prompt: str = Field(max_length=32_000)
    model: str | None = Field(None, description="OpenAI's ids are served by the provider's GPT Image 2")
    n: int | None = Field(None, ge=1, le=10, description="One job per image; a batch for n > 1")
    size: Size | None = Field(None, description=_SIZE)
    quality: str | None = Field(None, description=_QUALITY)
    response_format: Literal["b64_json", "url"] | None = Field(
        None, description="`b64_json` (default; from our stored copy) or `url` (`/v1/jobs/{id}/images/{n}`)"
    )
    user: str | None = Field(None, max_length=256, description="Kept in the jobs' metadata as `openai_user`")
    background: str | None = Field(None, description="Accepted, not acted on")
    moderation: str | None = Field(None, description="Accepted, not acted on")
    output_format: str | None = Field(None, description="Accepted, not acted on: the answer says the real one")
    output_compression: int | None = Field(None, ge=0, le=100, description="Accepted, not acted on")
    style: str | None = Field(None, description="Accepted, not acted on")
    stream: bool | None = Field(None, description="`true` is refused (400)")


class ImagesEditRequest(BaseModel):
    """OpenAI's ``images.edit`` multipart body (its text fields are those of a generation)."""

    image: list[bytes] = Field(description="`image` or `image[]`: 1 to 16 PNG, JPEG or WebP files")
    prompt: str = Field(max_length=32_000)
    model: str | None = None
    n: int | None = Field(None, ge=1, le=10)
    size: Size | None = Field(None, description=_SIZE)
    quality: str | None = Field(None, description=_QUALITY)
    response_format: Literal["b64_json", "url"] | None = None
    user: str | None = Field(None, max_length=256)
    mask: bytes | None = Field(None, description="Refused (400): no provider here takes a mask")


class ImageData(BaseModel):
    """One image of the answer."""

    b64_json: str | None = None
    url: str | None = Field(None, description="Fetch it with the same bearer token")
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """OpenAI's ``ImagesResponse``."""

    created: int
    data: list[ImageData]
    output_format: str | None = None
    size: str | None = None
    quality: str | None = None
    usage: dict[str, Any] | None = Field(None, description="Summed over the jobs, when the provider reports it")


class OpenAIError(BaseModel):
    """What went wrong, as the openai SDK reads it."""

    message: str = Field(description="Names the job id(s) when there are any (follow `/v1/jobs/{id}`)")
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(BaseModel):
    """Every error of these routes."""

    error: OpenAIError


def _body(content_type: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    if content_type.startswith("multipart/"):
        # Files are binary strings in OpenAPI, not base64 text.
        schema["properties"]["image"] = {"type": "array", "items": {"type": "string", "format": "binary"}}
        schema["properties"]["mask"] = {"type": "string", "format": "binary"}
    return {"requestBody": {"required": True, "content": {content_type: {"schema": schema}}}}


GENERATE_BODY = _body("application/json", ImagesGenerateRequest)
EDIT_BODY = _body("multipart/form-data", ImagesEditRequest)
