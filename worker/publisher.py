"""The Celery implementation of the core's ``Publisher``."""

from __future__ import annotations

from celery import Celery

from config.celery import publish_options
from config.settings import get_settings
from imagegen.messages import Step
from worker.app import app


class CeleryPublisher:
    """Sends steps as Celery messages by task name (ids only in the arguments)."""

    def __init__(self, celery_app: Celery | None = None) -> None:
        self._app = celery_app or app

    def publish(self, step: Step) -> None:
        """Send ``step.task(step.job_id)`` to ``step.queue``, delayed by ``step.countdown``."""
        kwargs = {"force": True} if step.force else None
        self._app.send_task(
            step.task,
            args=[step.job_id],
            kwargs=kwargs,
            queue=step.queue,
            countdown=step.countdown or None,
            **publish_options(step, get_settings()),
        )
