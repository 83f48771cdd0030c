"""What the core asks the Celery shell to do next, and the publisher interface that does it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

TaskName = Literal["imagegen.submit", "imagegen.poll", "imagegen.notify", "imagegen.finalize"]

SUBMIT: TaskName = "imagegen.submit"
POLL: TaskName = "imagegen.poll"
NOTIFY: TaskName = "imagegen.notify"
#: Downloading a finished task's result files: its own message, with time limits sized for downloads.
FINALIZE: TaskName = "imagegen.finalize"
POLL_QUEUE = "poll"
#: Caller notifications get a queue of their own: a slow receiver holds a worker process for up to its
#: read timeout, and must never hold up the reconciler (``RECONCILE_QUEUE``) or sends by name.
NOTIFY_QUEUE = "notify"
#: ``imagegen.reconcile`` alone: a small dedicated worker keeps every timer running whatever else is slow.
RECONCILE_QUEUE = "reconcile"
#: Every queue a plain ``celery -A worker worker`` consumes; dedicated workers pick some with ``-Q``.
QUEUES = ("celery", "interactive", "batch", "poll", "openai", "openai-batch", RECONCILE_QUEUE, NOTIFY_QUEUE)


@dataclass(frozen=True)
class Step:
    """Publish ``task(job_id)`` on ``queue`` after ``countdown`` seconds."""

    task: TaskName
    job_id: str
    queue: str
    countdown: float = 0.0
    #: Poll now even if not due (a webhook said the upstream task changed).
    force: bool = False


#: Synchronous providers hold a worker process for minutes per call: their submits get their own queue
#: (the interactive one), and batch-priority submits a second one, so a batch never delays interactive work.
SYNC_PROVIDER_QUEUES = {"openai": "openai"}
SYNC_BATCH_QUEUES = {"openai": "openai-batch"}
#: Every queue that carries a synchronous provider's submits (they need long time limits).
SYNC_QUEUES = frozenset({*SYNC_PROVIDER_QUEUES.values(), *SYNC_BATCH_QUEUES.values()})


def submit_step(job_id: str, priority: str, provider: str = "apidot", countdown: float = 0.0) -> Step:
    """A submit message on the job's priority queue (``interactive``/``batch``), or its provider's own
    queue for that priority."""
    lanes = SYNC_BATCH_QUEUES if priority == "batch" else SYNC_PROVIDER_QUEUES
    return Step(SUBMIT, job_id, lanes.get(provider, priority), countdown)


def poll_step(job_id: str, countdown: float = 0.0, *, force: bool = False) -> Step:
    """A poll message on the ``poll`` queue."""
    return Step(POLL, job_id, POLL_QUEUE, countdown, force)


def finalize_step(job_id: str, countdown: float = 0.0) -> Step:
    """A finalize (result download) message, on the ``poll`` queue next to the polls that lead to it."""
    return Step(FINALIZE, job_id, POLL_QUEUE, countdown)


def notify_step(job_id: str, countdown: float = 0.0) -> Step:
    """A caller-notification message."""
    return Step(NOTIFY, job_id, NOTIFY_QUEUE, countdown)


class Publisher(Protocol):
    """Sends steps to the broker. ``worker/`` implements it with Celery; tests may record them."""

    def publish(self, step: Step) -> None:
        """Send one message (after the database change that scheduled it has committed)."""
        ...
