"""Job-change announcements: which jobs a transaction changed, published on Redis after it commits.

A waiting HTTP request (``Prefer: wait``, the events stream, the OpenAI-compatible routes) sleeps until
an announcement names its job, then re-reads the row: the database stays the truth and an announcement
only says "look again". Announcements are soft state. One lost to a Redis outage or a dropped
subscription costs a waiter its slow re-read interval, never a wrong answer. Two deployments that share a
Redis wake each other's waiters now and then. Nothing more happens: job ids are UUIDs, and each waiter
re-reads its own database.

This module imports no Redis client (``imagegen status`` loads the store without one); publishing is
``store.announcer``'s.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

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
