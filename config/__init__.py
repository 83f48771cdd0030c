"""The one place that reads the environment: typed settings and the Celery configuration built from them."""

from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
