"""APIDot submit-body validation, by the fields APIDot documents. Pure: returns a message or None."""

from __future__ import annotations

import re
from collections.abc import Mapping

QUALITIES = frozenset({"low", "medium", "high"})
RATIO_SIZES = frozenset({"auto", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
RESOLUTIONS = frozenset({"1K", "2K", "4K"})
_CUSTOM_SIZE_RE = re.compile(r"[1-9]\d*[xX][1-9]\d*")


def _check_size(size: object, resolution: object) -> str | None:
    if resolution is not None and resolution not in RESOLUTIONS:
        return f"unsupported resolution {resolution!r}; use one of 1K, 2K, 4K"
    if size is None or size in RATIO_SIZES:
        return None
    if not isinstance(size, str) or not _CUSTOM_SIZE_RE.fullmatch(size):
        return f"unsupported size {size!r}"
    if resolution not in ("2K", "4K"):
        return "custom sizes require resolution 2K or 4K"
    return None


def _check_images(model: str, image_urls: object) -> str | None:
    # An empty list or null counts as absent.
    if image_urls is not None and not (
        isinstance(image_urls, list) and all(isinstance(u, str) and u for u in image_urls)
    ):
        return "image_urls must be a list of URLs"
    present = bool(image_urls)
    if model == "gpt-image-2" and present:
        return "image_urls is not supported for gpt-image-2; use gpt-image-2-edit"
    if model == "gpt-image-2-edit" and not present:
        return "image_urls is required for gpt-image-2-edit"
    return None


def validate_submit(payload: Mapping[str, object]) -> str | None:
    """Check a submit body like APIDot does; return the 400 message, or None if valid."""
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return "model is required"
    callback = payload.get("callback_url")
    if callback is not None and not isinstance(callback, str):
        return "callback_url must be a string"
    data = payload.get("input")
    if not isinstance(data, dict):
        return "input is required"
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if "n" in data:
        return "n is not supported; each request returns one image"
    quality = data.get("quality")
    if quality is not None and quality not in QUALITIES:
        return f"unsupported quality {quality!r}; use one of low, medium, high"
    return _check_size(data.get("size"), data.get("resolution")) or _check_images(model, data.get("image_urls"))
