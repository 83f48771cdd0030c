"""Job-change announcements: which jobs a transaction changed, published on Redis after it commits.

A waiting HTTP request (``Prefer: wait``, the events stream, the OpenAI-compatible routes) sleeps until
an announcement names its job, then re-reads the row: the database stays the truth and an announcement
only says "look again". Announcements are soft state. One lost to a Redis outage or a dropped
subscription costs a waiter its slow re-read interval, never a wrong answer. Two deployments that share a
Redis wake each other's waiters now and then. Nothing more happens: job ids are UUIDs, and each waiter
re-reads its own database.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
from sqlalchemy.orm import Session

from imagegen.store.softredis import RedisGuard

#: The pub/sub channel. A message is the changed jobs' ids, separated by spaces.
CHANNEL = "imagegen:job-changes"
#: Ids per message: a batch cancel of 10,000 jobs becomes a few messages of ~37 KB, not one of 370 KB.
IDS_PER_MESSAGE = 1_000

_INFO_KEY = "imagegen.changed_jobs"


def note(session: Session, job_ids: Iterable[str]) -> None:
    """Remember that this transaction changed ``job_ids``; they are announced if and when it commits."""
    changed: set[str] = session.info.setdefault(_INFO_KEY, set())
    changed.update(job_ids)


def take(session: Session) -> set[str]:
    """The ids noted in ``session`` since the last ``take`` (then forgotten)."""
    changed: set[str] = session.info.pop(_INFO_KEY, set())
    return changed


def parse(message: bytes | str) -> list[str]:
    """The job ids of one announcement (whatever else arrives on the channel yields nothing usable)."""
    text = message.decode("ascii", "replace") if isinstance(message, bytes) else message
    return [part for part in text.split(" ") if part]


class Announcer:
    """Publishes committed changes, failing soft: a Redis outage costs one warning, not a failed job."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._guard = RedisGuard("job-change announcements")

    def announce(self, job_ids: Iterable[str]) -> None:
        """Publish ``job_ids`` on ``CHANNEL`` (one round trip for up to ``IDS_PER_MESSAGE`` of them)."""
        ids = sorted(job_ids)
        if ids:
            self._guard.call(lambda: self._publish(ids), None)

    def _publish(self, ids: list[str]) -> None:
        if len(ids) <= IDS_PER_MESSAGE:
            self._client.publish(CHANNEL, " ".join(ids))
            return
        with self._client.pipeline(transaction=False) as pipe:
            for start in range(0, len(ids), IDS_PER_MESSAGE):
                pipe.publish(CHANNEL, " ".join(ids[start : start + IDS_PER_MESSAGE]))
            pipe.execute()
