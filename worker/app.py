"""The Celery app object, configured from settings, with the per-process wiring attached."""

from __future__ import annotations

from celery import Celery

from config.celery import celery_config
from config.settings import get_settings

app = Celery("imagegen", include=["tasks.jobs"])
app.conf.update(celery_config(get_settings()))

# Signal handlers (per-process runtime, argument redaction) register on import.
from worker import signals  # noqa: E402,F401
