"""The API process's one subscription to job-change announcements, fanned out to its waiting requests.

Each process holds a single Redis pub/sub connection however many requests wait, and a waiting request
holds no thread and no database connection while it sleeps: it awaits an ``asyncio.Event`` that the
feed sets when an announcement names one of its jobs (``store.changes``). While the subscription is down
(Redis restarting, not reachable) waiters fall back to their slow re-read; after it comes back every
waiter is woken once, since announcements may have been missed in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

import redis.asyncio as aioredis

from imagegen.store.changes import CHANNEL, parse

log = logging.getLogger(__name__)

#: Waits between reconnection attempts: first quickly, then no faster than this.
RECONNECT_MAX_S = 5.0


class ChangeFeed:
    """Started and stopped with the app (its lifespan); ``watching`` works whether or not it runs."""

    def __init__(self, redis_url: str | None) -> None:
        self._url = redis_url
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._warned = False

    async def start(self) -> None:
        """Subscribe in the background (a Redis that is down never delays the app's start)."""
        if self._url is not None and self._task is None:
            self._task = asyncio.create_task(self._run(self._url), name="imagegen-change-feed")

    async def stop(self) -> None:
        """Unsubscribe and wake every waiter (they re-read and answer)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._wake_all()

    @contextmanager
    def watching(self, job_ids: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set whenever one of ``job_ids`` is announced; register before reading the rows."""
        event = asyncio.Event()
        ids = list(dict.fromkeys(job_ids))
        for job_id in ids:
            self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            for job_id in ids:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        """How many job ids some request is waiting on (for tests and metrics)."""
        return len(self._waiters)

    def dispatch(self, job_ids: Iterable[str]) -> None:
        """Wake the waiters of ``job_ids`` (an announcement arrived)."""
        for job_id in job_ids:
            for event in self._waiters.get(job_id, ()):
                event.set()

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()

    async def _run(self, url: str) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen(url)
            except Exception as exc:
                if not self._warned:  # one line per outage, not one per reconnection attempt
                    log.warning("job-change feed: Redis unavailable, waiters re-read slowly until it returns: %s", exc)
                    self._warned = True
            if self.connected.is_set():  # it was up: a new outage, so retry quickly first
                self.connected.clear()
                delay = 0.1
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def _listen(self, url: str) -> None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2.0, health_check_interval=15)
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(CHANNEL)
                if not self.connected.is_set():
                    self.connected.set()
                    self._warned = False
                    self._wake_all()  # anything announced while we were away is re-read now
                    log.info("job-change feed: subscribed")
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None and message.get("type") == "message":
                        self.dispatch(parse(message["data"]))
        finally:
            await client.aclose()
