"""The Celery implementation of the core's ``Publisher``."""

from __future__ import annotations

from imagegen.steps import Step
from worker.app import app


class CeleryPublisher:
    """Sends steps as Celery messages by task name (ids only in the arguments)."""

    def publish(self, step: Step) -> None:
        """Send ``step.task(step.job_id)`` to ``step.queue``, delayed by ``step.countdown``."""
        app.send_task(
            step.task,
            args=[step.job_id],
            queue=step.queue,
            countdown=step.countdown or None,
        )
