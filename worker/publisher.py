"""The Celery implementation of the core's ``Publisher``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery

from config.celery import publish_options
from config.settings import get_settings
from imagegen.messages import Step
from worker.app import app

#: Redis commands buffered before a pipeline is sent (two per message: the LPUSH and the task-sent event).
PIPELINE_COMMANDS = 2_000

#: kombu refuses to pipeline on a connection that retries a timed-out command (a replayed pipeline could
#: send its messages twice), so the connection for many messages does not: a failed pipeline raises, and
#: the reconciler releases the rows whose messages are missing.
_PIPELINE_SAFE = {"retry_on_timeout": False}


class CeleryPublisher:
    """Sends steps as Celery messages by task name (ids only in the arguments)."""

    def __init__(self, celery_app: Celery | None = None) -> None:
        self._app = celery_app or app

    def publish(self, step: Step) -> None:
        """Send ``step.task(step.job_id)`` to ``step.queue``, delayed by ``step.countdown``."""
        self._send(step)

    def publish_many(self, steps: Sequence[Step]) -> None:
        """Send every step over one connection, pipelined: one round trip per ``PIPELINE_COMMANDS``.

        The same messages (and task-sent events) as ``publish`` gives, through kombu's ``Producer.batch``.
        """
        if len(steps) <= 1:
            for step in steps:
                self.publish(step)  # the app's pooled connection: no connect for one message
            return
        with self._app.connection_for_write(transport_options=_PIPELINE_SAFE) as connection:
            # One refused connect is the answer; kombu's default would retry for seconds first.
            connection.ensure_connection(max_retries=0)
            producer = self._app.amqp.Producer(connection, auto_declare=False)
            with producer.batch(max_size=PIPELINE_COMMANDS):
                for step in steps:
                    # Inside a batch a publish only buffers; retrying it would retry nothing.
                    self._send(step, producer=producer, retry=False)

    def _send(self, step: Step, **options: Any) -> None:
        kwargs = {"force": True} if step.force else None
        self._app.send_task(
            step.task,
            args=[step.job_id],
            kwargs=kwargs,
            queue=step.queue,
            countdown=step.countdown or None,
            **publish_options(step, get_settings()),
            **options,
        )
