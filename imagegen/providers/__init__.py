"""Provider clients behind one interface, and the registry that builds them from settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import httpx

from config.settings import Settings
from imagegen.net.urls import FetchPolicy
from imagegen.providers.apidot import APIDotProvider
from imagegen.providers.base import GeneratedImage, Phase, Provider, SubmitResult, UpstreamState
from imagegen.providers.image2 import Image2Provider
from imagegen.providers.openai import OpenAIProvider
from imagegen.storage import upload_url

__all__ = [
    "APIDotProvider",
    "GeneratedImage",
    "Image2Provider",
    "OpenAIProvider",
    "Phase",
    "Provider",
    "SubmitResult",
    "UpstreamState",
    "build_providers",
]


def build_providers(
    settings: Settings, client: httpx.Client, read_upload: Callable[[str], bytes] | None = None
) -> dict[str, Provider]:
    """One client per provider, sharing the process's httpx client (``read_upload``: our storage)."""
    # A submit waits longer than a status call before giving up: past its read timeout the outcome is unknown.
    submit_timeout = httpx.Timeout(settings.http.submit_read_s, connect=settings.http.connect_s)
    return {
        "apidot": APIDotProvider(
            client,
            base_url=settings.apidot_base_url,
            api_key=settings.apidot_api_key.get_secret_value(),
            submit_timeout=submit_timeout,
            upload_url=partial(upload_url, settings.imagegen_public_url, settings.upload_token_key),
        ),
        "openai": OpenAIProvider(
            client,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            fetch_policy=FetchPolicy(allow_private=settings.http.allow_private_urls),
            read_timeout_s=settings.http.openai_read_s,
            read_upload=read_upload,
        ),
        "image2": Image2Provider(
            client,
            base_url=settings.image2_base_url,
            api_key=settings.image2_api_key.get_secret_value(),
            submit_timeout=submit_timeout,
        ),
    }
