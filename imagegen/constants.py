"""The wire vocabulary: task, queue, priority and provider names, Redis key prefixes, stored-text limits.

Every name here is also read by something outside this process (Celery routing, Flower, a caller
sending by task name, a Redis key another host reads, a column another process writes), so each has
exactly one spelling, here. The README's tables list the same names.
"""

from __future__ import annotations

from typing import Final, Literal

TaskName = Literal["imagegen.submit", "imagegen.poll", "imagegen.notify", "imagegen.notify_batch", "imagegen.finalize"]

SUBMIT_TASK: Final[TaskName] = "imagegen.submit"
POLL_TASK: Final[TaskName] = "imagegen.poll"
NOTIFY_TASK: Final[TaskName] = "imagegen.notify"
#: A batch's ``batch.finished`` notification: its message carries the batch id, never a job id.
NOTIFY_BATCH_TASK: Final[TaskName] = "imagegen.notify_batch"
#: Downloading a finished task's result files: its own message, with time limits sized for downloads.
FINALIZE_TASK: Final[TaskName] = "imagegen.finalize"
#: Sent by beat: the durable scheduler behind every timer.
RECONCILE_TASK: Final = "imagegen.reconcile"

PRIORITIES: Final = ("interactive", "batch")
Priority = Literal["interactive", "batch"]
PROVIDERS: Final = ("apidot", "openai", "image2")
#: What a request without ``quality`` or ``resolution`` is generated (priced, timed) at.
DEFAULT_QUALITY: Final = "medium"
DEFAULT_RESOLUTION: Final = "1K"

#: Status calls and result downloads (many, short).
POLL_QUEUE: Final = "poll"
#: Caller notifications get a queue of their own: a slow receiver holds a worker process for up to its
#: read timeout, and must never hold up the reconciler (``RECONCILE_QUEUE``) or sends by name.
NOTIFY_QUEUE: Final = "notify"
#: ``imagegen.reconcile`` alone: a small dedicated worker keeps every timer running whatever else is slow.
RECONCILE_QUEUE: Final = "reconcile"
#: Synchronous providers hold a worker process for minutes per call: their submits get their own queue
#: (the interactive one), and batch-priority submits a second one, so a batch never delays interactive work.
SYNC_PROVIDER_QUEUES: Final = {"openai": "openai"}
SYNC_BATCH_QUEUES: Final = {"openai": "openai-batch"}
#: Every queue that carries a synchronous provider's submits (they need long time limits).
SYNC_QUEUES: Final = frozenset({*SYNC_PROVIDER_QUEUES.values(), *SYNC_BATCH_QUEUES.values()})
#: Every queue a plain ``celery -A worker worker`` consumes; dedicated workers pick some with ``-Q``.
QUEUES: Final = ("celery", *PRIORITIES, POLL_QUEUE, "openai", "openai-batch", RECONCILE_QUEUE, NOTIFY_QUEUE)

#: Redis keys: the limiter's per-key state, learned durations, and each worker host's progress stamp.
RATE_LIMIT_PREFIX: Final = "imagegen:rl"
DURATIONS_PREFIX: Final = "imagegen:dur"
PROGRESS_KEY: Final = "imagegen:progress:{hostname}"

#: Stored text is clipped: a job's final ``error_message``, and the shorter notes (``last_error_message``,
#: attempt-log messages, a paused key's reason message, a delivery's error).
ERROR_MESSAGE_CHARS: Final = 1000
NOTE_CHARS: Final = 500


def clip(text: str, limit: int = NOTE_CHARS) -> str:
    """``text`` fit to store: NUL characters removed (PostgreSQL text cannot hold them), clipped."""
    return text.replace("\x00", "")[:limit]
