"""Worker liveness that looks at progress, not at the PID.

Celery workers are known to stay up but stop consuming after a Redis reconnect (celery#8030, #8091,
#10205). Each worker process stamps ``imagegen:progress:<hostname>`` in Redis when it finishes a task;
the check fails when work is waiting in the queues but the worker has not finished anything for
``max_idle_s``. With beat sending ``imagegen.reconcile`` every few seconds, a healthy worker that
consumes the ``reconcile`` queue is never idle for long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from imagegen.constants import PROGRESS_KEY
from imagegen.store.softredis import queue_depths

#: The stamp outlives any sensible --max-idle, then disappears with the worker.
PROGRESS_TTL_S = 3600


def stamp_progress(client: redis.Redis, hostname: str, now: float | None = None) -> None:
    """Record that ``hostname`` just finished a task."""
    client.set(PROGRESS_KEY.format(hostname=hostname), f"{now or time.time():.3f}", ex=PROGRESS_TTL_S)


@dataclass(frozen=True)
class Liveness:
    """The verdict and the figures behind it."""

    alive: bool
    idle_s: float | None
    waiting: int
    reason: str


def check(client: redis.Redis, hostname: str, queues: tuple[str, ...], *, max_idle_s: float) -> Liveness:
    """Alive if the worker finished a task within ``max_idle_s``, or if nothing is waiting for it."""
    raw = client.get(PROGRESS_KEY.format(hostname=hostname))
    idle = time.time() - float(raw) if raw is not None else None
    depths = queue_depths(client, queues)
    waiting = sum(depths[q] for q in queues)  # a queue named twice counts twice, as two LLENs did
    if idle is not None and idle <= max_idle_s:
        return Liveness(True, idle, waiting, f"last task finished {idle:.0f}s ago")
    if waiting == 0:
        return Liveness(True, idle, waiting, "idle, and nothing is waiting")
    since = "never" if idle is None else f"{idle:.0f}s ago"
    return Liveness(False, idle, waiting, f"{waiting} messages waiting but the last task finished {since}")
