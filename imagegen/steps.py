"""What the core asks the Celery shell to do next, and the publisher interface that does it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

TaskName = Literal["imagegen.submit", "imagegen.poll"]

SUBMIT: TaskName = "imagegen.submit"
POLL: TaskName = "imagegen.poll"
POLL_QUEUE = "poll"


@dataclass(frozen=True)
class Step:
    """Publish ``task(job_id)`` on ``queue`` after ``countdown`` seconds."""

    task: TaskName
    job_id: str
    queue: str
    countdown: float = 0.0


def submit_step(job_id: str, priority: str, countdown: float = 0.0) -> Step:
    """A submit message on the job's priority queue (``interactive`` or ``batch``)."""
    return Step(SUBMIT, job_id, priority, countdown)


def poll_step(job_id: str, countdown: float = 0.0) -> Step:
    """A poll message on the ``poll`` queue."""
    return Step(POLL, job_id, POLL_QUEUE, countdown)


class Publisher(Protocol):
    """Sends steps to the broker. ``worker/`` implements it with Celery; tests may record them."""

    def publish(self, step: Step) -> None:
        """Send one message (after the database change that scheduled it has committed)."""
        ...
