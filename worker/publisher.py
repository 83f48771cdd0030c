"""The Celery implementation of the core's ``Publisher``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.utils import uuid

from config.celery import publish_options
from config.settings import get_settings
from imagegen.messages import Step
from worker.app import app

#: Messages per pipeline sent to Redis (one LPUSH each), and task-sent events per ``task.multi`` message.
PIPELINE_MESSAGES = 1_000

#: Fewer steps than this go one by one over the app's pooled connection: opening the pipelined one costs
#: about what four pooled sends do.
PIPELINE_FROM = 8

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
        """Send every step over one connection, pipelined: one round trip per ``PIPELINE_MESSAGES``.

        The messages are those ``publish`` sends, through kombu's ``Producer.batch``; their task-sent
        events go out ``PIPELINE_MESSAGES`` to a ``task.multi`` event, as a worker sends its task events.
        """
        if len(steps) < PIPELINE_FROM:
            for step in steps:
                self.publish(step)
            return
        with self._app.connection_for_write(transport_options=_PIPELINE_SAFE) as connection:
            # One refused connect is the answer; kombu's default would retry for seconds first.
            connection.ensure_connection(max_retries=0)
            producer = self._app.amqp.Producer(connection, auto_declare=False)
            # Each queue is declared once, not once per message as send_task would.
            for queue in dict.fromkeys(step.queue for step in steps):
                producer.maybe_declare(self._app.amqp.queues[queue])
            # The batch closes first: its messages are sent before the rest of their events.
            with self._sent_events(connection) as events, producer.batch(max_size=PIPELINE_MESSAGES):
                settings = get_settings()
                limits: dict[tuple[str, str], dict[str, Any]] = {}
                for step in steps:
                    lane = (step.task, step.queue)
                    if lane not in limits:
                        limits[lane] = publish_options(step, settings)
                    self._send_one_of_many(step, limits[lane], producer, events)

    def _sent_events(self, connection: Any) -> _BufferedSentEvents:
        dispatcher = self._app.events.Dispatcher(
            connection,
            buffer_group=["task"],
            buffer_limit=PIPELINE_MESSAGES,
            enabled=self._app.conf.task_send_sent_event,
        )
        return _BufferedSentEvents(dispatcher)

    def _send_one_of_many(
        self, step: Step, options: dict[str, Any], producer: Any, events: _BufferedSentEvents
    ) -> None:
        """The message ``send_task`` would send for ``step`` (with ``options``, its ``publish_options``),
        built and sent by the two calls ``send_task`` makes.

        ``send_task`` spends as much again on what these steps never need (its task registry, routes and
        result object); ``tests/store/test_bulk_intake.py`` checks the messages stay identical.
        """
        amqp = self._app.amqp
        args, kwargs = [step.job_id], {"force": True} if step.force else {}
        parent = self._app.current_worker_task  # inside a task: the same parent links send_task records
        root_id = (parent.request.root_id or parent.request.id) if parent else None
        message = amqp.create_task_message(
            uuid(),
            step.task,
            args,
            kwargs,
            countdown=step.countdown or None,
            # What Celery's saferepr gives for a job id and a flag (the task-sent event shows it).
            argsrepr=repr(args),
            kwargsrepr=repr(kwargs),
            reply_to=self._app.thread_oid,
            time_limit=options.get("time_limit"),
            soft_time_limit=options.get("soft_time_limit"),
            create_sent_event=self._app.conf.task_send_sent_event,
            root_id=root_id,
            parent_id=parent.request.id if parent else None,
            ignore_result=None,
        )
        # Inside a batch a publish only buffers (retrying it would retry nothing); the queue is declared.
        queue = amqp.queues[step.queue]
        amqp.send_task_message(
            producer, step.task, message, queue=queue, retry=False, declare=[], event_dispatcher=events
        )

    def _send(self, step: Step) -> None:
        kwargs = {"force": True} if step.force else None
        self._app.send_task(
            step.task,
            args=[step.job_id],
            kwargs=kwargs,
            queue=step.queue,
            countdown=step.countdown or None,
            **publish_options(step, get_settings()),
        )


class _BufferedSentEvents:
    """The event dispatcher handed to ``send_task_message``: each task-sent event joins a buffer that goes
    out as one ``task.multi`` event (Celery's own event batching) instead of one event message per task."""

    def __init__(self, dispatcher: Any) -> None:
        self._dispatcher = dispatcher

    def publish(self, type: str, fields: dict[str, Any], producer: Any, **_: Any) -> None:
        """Called by Celery's ``send_task_message`` for each task-sent event."""
        self._dispatcher.send(type, **fields)

    def __enter__(self) -> _BufferedSentEvents:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:  # the messages went out: announce the rest of them
                self._dispatcher.flush()
        finally:
            self._dispatcher.close()
