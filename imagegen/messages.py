"""What the core asks the Celery shell to do next, and the publisher interface that does it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imagegen.constants import (
    FINALIZE_TASK,
    NOTIFY_BATCH_TASK,
    NOTIFY_QUEUE,
    NOTIFY_TASK,
    POLL_QUEUE,
    POLL_TASK,
    SUBMIT_TASK,
    SYNC_BATCH_QUEUES,
    SYNC_PROVIDER_QUEUES,
    TaskName,
)


@dataclass(frozen=True)
class Step:
    """Publish ``task(job_id)`` on ``queue`` after ``countdown`` seconds."""

    task: TaskName
    #: The id the task takes: a job's, or for ``imagegen.notify_batch`` a batch's.
    job_id: str
    queue: str
    countdown: float = 0.0
    #: Poll now even if not due (a webhook said the upstream task changed).
    force: bool = False


def submit_step(job_id: str, priority: str, provider: str = "apidot", countdown: float = 0.0) -> Step:
    """A submit message on the job's priority queue (``interactive``/``batch``), or its provider's own
    queue for that priority."""
    lanes = SYNC_BATCH_QUEUES if priority == "batch" else SYNC_PROVIDER_QUEUES
    return Step(SUBMIT_TASK, job_id, lanes.get(provider, priority), countdown)


def poll_step(job_id: str, countdown: float = 0.0, *, force: bool = False) -> Step:
    """A poll message on the ``poll`` queue."""
    return Step(POLL_TASK, job_id, POLL_QUEUE, countdown, force)


def finalize_step(job_id: str, countdown: float = 0.0) -> Step:
    """A finalize (result download) message, on the ``poll`` queue next to the polls that lead to it."""
    return Step(FINALIZE_TASK, job_id, POLL_QUEUE, countdown)


def notify_step(job_id: str, countdown: float = 0.0) -> Step:
    """A caller-notification message."""
    return Step(NOTIFY_TASK, job_id, NOTIFY_QUEUE, countdown)


def notify_batch_step(batch_id: str, countdown: float = 0.0) -> Step:
    """A batch-notification message, on the ``notify`` queue next to the jobs' ones."""
    return Step(NOTIFY_BATCH_TASK, batch_id, NOTIFY_QUEUE, countdown)


class Publisher(Protocol):
    """Sends steps to the broker. ``worker/`` implements it with Celery; tests may record them."""

    def publish(self, step: Step) -> None:
        """Send one message (after the database change that scheduled it has committed)."""
        ...

    def publish_many(self, steps: Sequence[Step]) -> None:
        """Send several messages at once, in order; raise if any may not have been sent."""
        ...
