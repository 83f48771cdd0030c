"""The HTTP API (intake, upstream webhooks, health, metrics): ``create_app`` builds it."""

from imagegen.api.app import create_app

__all__ = ["create_app"]
