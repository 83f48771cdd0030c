"""Fallback routes: a request rewritten for the next provider of its route, or the reason it cannot be.

A fallback hop is sent the same picture request in that provider's own terms, or not at all. Only
mappings that keep the request's meaning are made (see docs/operations.md, "Fallback routes"):

- model: the GPT Image 2 family crosses providers (apidot ``gpt-image-2`` / ``gpt-image-2-edit`` ↔ openai
  and image2 ``gpt-image-2``; apidot gets ``-edit`` when the request carries reference images). Any other
  model is one provider's own and is refused on another.
- size, apidot → openai/image2: no size or ``auto`` → the same; ``1:1`` → ``1024x1024``, ``3:2`` →
  ``1536x1024``, ``2:3`` → ``1024x1536`` (APIDot's 1K tier); a custom ``WxH`` (2K/4K) → the same ``WxH``
  when OpenAI's custom-size rules allow it. Other ratios, and ratios at 2K/4K, have no equivalent.
- size, openai/image2 → apidot: the reverse of the named sizes; a custom ``WxH`` has no equivalent (APIDot
  needs a resolution tier that OpenAI's sizes do not say). openai ↔ image2 sizes pass as they are.
- quality: low/medium/high pass; openai's ``auto`` becomes "not set" (the provider's own default).
- reference images: ``image_urls`` pass (openai downloads them and uploads them itself);
  ``image_files`` (uploads in our storage) reach openai as multipart parts and apidot as signed URLs of
  ``imagegen api`` (``GET /uploads/...``, under ``IMAGEGEN_PUBLIC_URL``); image2 takes neither, so
  such a hop is refused.

The hop's request keeps every other field and carries the rest of the route as its ``fallback``, so the
stored request always describes the hop being served.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Models that mean the same thing on every provider, by provider.
FAMILY = {"apidot": ("gpt-image-2", "gpt-image-2-edit"), "openai": ("gpt-image-2",), "image2": ("gpt-image-2",)}
#: APIDot ratio at its 1K tier → OpenAI's named size (and back).
RATIO_TO_OPENAI = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}
OPENAI_TO_RATIO = {v: k for k, v in RATIO_TO_OPENAI.items()}
_OPENAI_SHAPED = ("openai", "image2")
#: Providers that can be given uploads in our storage (``image_files``); the others take image URLs only.
UPLOAD_PROVIDERS = ("openai", "apidot")
_WXH = re.compile(r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}\Z")


class NoMapping(ValueError):
    """The request cannot be carried by that provider; ``str()`` says why."""


def hop_request(data: Mapping[str, Any], target: str) -> dict[str, Any]:
    """``data`` (a stored request, served by ``data["provider"]``) rewritten for ``target``.

    Raises ``NoMapping`` naming what has no equivalent. The result is not validated here: the caller
    builds an ``ImageRequest`` from it (whose rules are the target's).
    """
    source = str(data.get("provider") or "apidot")
    out = {k: v for k, v in data.items() if k not in ("provider", "fallback")}
    out["provider"] = target
    route = [str(p) for p in data.get("fallback") or ()]
    rest = route[route.index(target) + 1 :] if target in route else []
    if rest:
        out["fallback"] = rest
    if source == target:
        return out
    has_images = bool(data.get("image_urls") or data.get("image_files"))
    out["model"] = _model(str(data.get("model") or "gpt-image-2"), source, target, has_images)
    if data.get("image_files") and target not in UPLOAD_PROVIDERS:
        raise NoMapping(f"image_files are uploaded files and {target} takes image URLs only")
    if data.get("quality") == "auto" and target != "openai":
        out.pop("quality")
    size, resolution = _size(data.get("size"), data.get("resolution"), source, target)
    for name, value in (("size", size), ("resolution", resolution)):
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def _model(model: str, source: str, target: str, has_images: bool) -> str:
    if model not in FAMILY.get(source, ()):
        raise NoMapping(f"model {model} is {source}'s own; {target} has no equivalent")
    if target == "apidot":
        return "gpt-image-2-edit" if has_images else "gpt-image-2"
    return "gpt-image-2"


def _size(size: Any, resolution: Any, source: str, target: str) -> tuple[str | None, str | None]:
    if source in _OPENAI_SHAPED and target in _OPENAI_SHAPED:
        return size, None
    if target in _OPENAI_SHAPED:  # from apidot
        custom = isinstance(size, str) and _WXH.match(size) is not None
        if custom:
            return size, None  # the openai size rules then judge it
        if resolution not in (None, "1K"):
            raise NoMapping(f"resolution {resolution} has no {target} equivalent")
        if size in (None, "auto"):
            return size, None
        if size in RATIO_TO_OPENAI:
            return RATIO_TO_OPENAI[size], None
        raise NoMapping(f"size {size} has no {target} equivalent (mapped: auto, {', '.join(RATIO_TO_OPENAI)})")
    # to apidot, from an OpenAI-shaped provider
    if size in (None, "auto"):
        return size, None
    if size in OPENAI_TO_RATIO:
        return OPENAI_TO_RATIO[size], None
    raise NoMapping(f"size {size} has no apidot equivalent (mapped: auto, {', '.join(OPENAI_TO_RATIO)})")
