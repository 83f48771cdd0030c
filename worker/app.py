"""The Celery app object, configured from settings, with the per-process wiring attached."""

from __future__ import annotations

import logging
import sys

from celery import Celery

from config.celery import celery_config
from config.settings import ConfigError, Settings, get_settings


def create_app(settings: Settings, *, name: str = "imagegen") -> Celery:
    """A Celery app for ``settings`` (tests build producer-only apps against their private Redis)."""
    # Every task gets the guard that keeps hostile messages from crashing the main process.
    celery = Celery(name, include=["tasks.jobs"], task_cls="worker.guard:GuardedTask")
    celery.conf.update(celery_config(settings))
    return celery


def _settings_or_exit() -> Settings:
    """The settings, or one line on stderr and exit 2: Celery would print the whole import traceback
    (its app loader catches Exception, not SystemExit, so ``celery -A worker …`` exits right here)."""
    try:
        return get_settings()
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None


app = create_app(_settings_or_exit())

# Signal handlers (database check, per-process runtime, argument redaction) register on import.
from worker import liveness, metrics, readiness, signals  # noqa: E402,F401

# httpx logs every request URL at INFO; URLs may be private (signed links, tokens), so only warnings get through.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)
