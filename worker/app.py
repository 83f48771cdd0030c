"""The Celery app object, configured from settings, with the per-process wiring attached."""

from __future__ import annotations

import logging

from celery import Celery

from config.celery import celery_config
from config.settings import get_settings

app = Celery("imagegen", include=["tasks.jobs"])
app.conf.update(celery_config(get_settings()))

# Signal handlers (per-process runtime, argument redaction) register on import.
from worker import signals  # noqa: E402,F401

# httpx logs every request URL at INFO; URLs may be private (SPEC §6), so only warnings get through.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)
