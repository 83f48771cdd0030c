"""Publishing job-change announcements on Redis: after commit, failing soft, keeping what could not go out.

The channel, the payload and which jobs a transaction changed are ``store.changes``'s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import redis

from imagegen.store.changes import CHANNEL, IDS_PER_MESSAGE
from imagegen.store.softredis import RedisGuard

#: Ids kept for the next announcement while Redis fails (beyond this, waiters rely on their re-read).
MAX_PENDING = 10_000


class Announcer:
    """Publishes committed changes, failing soft: a Redis outage costs one warning, not a failed job.

    Ids that could not be published (Redis timed out, or the guard is skipping it for a few seconds)
    go out with the next announcement that succeeds, so a short outage delays wake-ups instead of
    losing them.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._guard = RedisGuard("job-change announcements")
        self._pending: set[str] = set()
        self._lock = threading.Lock()  # the API's sync routes share one runtime across threads

    def announce(self, job_ids: Iterable[str]) -> None:
        """Publish ``job_ids`` (and any left over) on ``CHANNEL``: one round trip per ``IDS_PER_MESSAGE``."""
        with self._lock:
            self._pending.update(job_ids)
            if not self._pending:
                return
            ids = sorted(self._pending)
            if self._guard.call(lambda: self._publish(ids), False):
                self._pending.clear()
            elif len(self._pending) > MAX_PENDING:
                self._pending = set(ids[-MAX_PENDING:])

    def _publish(self, ids: list[str]) -> bool:
        if len(ids) <= IDS_PER_MESSAGE:
            self._client.publish(CHANNEL, " ".join(ids))
            return True
        with self._client.pipeline(transaction=False) as pipe:
            for start in range(0, len(ids), IDS_PER_MESSAGE):
                pipe.publish(CHANNEL, " ".join(ids[start : start + IDS_PER_MESSAGE]))
            pipe.execute()
        return True
