"""Provider clients behind one interface, and the registry that builds them from settings."""

from __future__ import annotations

import httpx

from config.settings import Settings
from imagegen.providers.apidot import APIDotProvider
from imagegen.providers.base import Phase, Provider, SubmitResult, UpstreamState

__all__ = ["APIDotProvider", "Phase", "Provider", "SubmitResult", "UpstreamState", "build_providers"]


def build_providers(settings: Settings, client: httpx.Client) -> dict[str, Provider]:
    """One client per provider, sharing the process's httpx client."""
    return {
        "apidot": APIDotProvider(
            client, base_url=settings.apidot_base_url, api_key=settings.apidot_api_key.get_secret_value()
        ),
    }
