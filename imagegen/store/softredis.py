"""Redis for soft state (limiter, learned durations, queue depths): short-timeout clients, a guard that
fails open, and the one way queue lengths are read.

The job's truth lives in the database; what lives in Redis besides the broker only makes things
faster or fairer, so a Redis outage must cost one quick failure per call, not a stalled worker.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")


def fast_client(url: str, *, timeout_s: float = 0.5) -> redis.Redis:
    """A client for the limiter: short timeouts and no retries, so a dead Redis costs one quick failure.

    redis-py's default client retries ten times with backoff, which would make each fail-open call slow.
    """
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


class RedisGuard:
    """Runs Redis calls fail-soft: an error returns the fallback, logs one warning per outage, and skips
    Redis for ``cooldown_s`` so every caller does not pay a connect timeout while it is down."""

    def __init__(self, what: str, *, cooldown_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.down = False
        self._skip_until = -math.inf

    def call(self, fn: Callable[[], T], fallback: T) -> T:
        """``fn()``, or ``fallback`` if Redis is failing (or failed less than ``cooldown_s`` ago)."""
        now = self.clock()
        if now < self._skip_until:
            return fallback
        try:
            result = fn()
        except (redis.RedisError, OSError) as exc:
            self._skip_until = now + self.cooldown_s
            if not self.down:
                self.down = True
                log.warning("%s: Redis unavailable, failing open until it returns: %s", self.what, exc)
            return fallback
        if self.down:
            self.down = False
            log.info("%s: Redis is back", self.what)
        return result


def queue_depths(client: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting per Celery queue (kombu's Redis transport keeps each queue as a list named after
    it), in one round trip. Raises ``redis.RedisError``: each caller knows what "cannot say" means to it."""
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
        return {queue: int(n) for queue, n in zip(queues, pipe.execute(), strict=True)}
