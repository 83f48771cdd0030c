"""The API process's one subscription to job-change announcements, fanned out to its waiting requests.

Each process holds a single Redis pub/sub connection however many requests wait, and a waiting request
holds no thread and no database connection while it sleeps: it awaits an ``asyncio.Event`` that the
feed sets when an announcement names one of its jobs (``store.changes``). While the subscription is down
(Redis restarting, not reachable) waiters fall back to their slow re-read; after it comes back every
waiter is woken once (a few hundred at a time), since announcements may have been missed in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

import redis.asyncio as aioredis

from imagegen.store.changes import CHANNEL, parse

log = logging.getLogger(__name__)

#: Waits between reconnection attempts: first quickly, then no faster than this.
RECONNECT_MAX_S = 5.0
#: The subscription sends a PING this often, and counts itself dead after ``SILENCE_S`` without any
#: answer: a half-open connection (a failover without a TCP reset) would otherwise look alive forever.
PING_EVERY_S = 10.0
SILENCE_S = 25.0
#: Waiters woken per step after a resubscription, so that a thousand streams do not re-read at once.
WAKE_BATCH = 200
WAKE_STEP_S = 0.05


class ChangeFeed:
    """Started and stopped with the app (its lifespan); ``watching`` works whether or not it runs."""

    def __init__(self, redis_url: str | None) -> None:
        self._url = redis_url
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.closing = False
        self._warned = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spread: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe in the background (a Redis that is down never delays the app's start)."""
        self._loop = asyncio.get_running_loop()
        if self._url is not None and self._task is None:
            self._task = asyncio.create_task(self._run(self._url), name="imagegen-change-feed")

    def close(self) -> None:
        """The process is stopping: every waiter answers with what it has now, every stream ends."""
        self.closing = True
        self._wake_all()

    def close_threadsafe(self) -> None:
        """``close`` from a signal handler or another thread (the server's SIGTERM hook)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)

    async def stop(self) -> None:
        """Unsubscribe and wake every waiter (they re-read and answer)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._spread is not None:
            self._spread.cancel()
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

    async def _wake_spread(self) -> None:
        events = [event for waiting in list(self._waiters.values()) for event in waiting]
        for start in range(0, len(events), WAKE_BATCH):
            for event in events[start : start + WAKE_BATCH]:
                event.set()
            await asyncio.sleep(WAKE_STEP_S)

    def _subscribed(self) -> None:
        if self.connected.is_set():
            return
        self.connected.set()
        self._warned = False
        log.info("job-change feed: subscribed")
        # Anything announced while we were away is re-read now, a few hundred waiters at a time.
        self._spread = asyncio.create_task(self._wake_spread(), name="imagegen-change-feed-wake")

    async def _run(self, url: str) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen(url)
            except Exception as exc:  # whatever broke it, the feed must come back
                if not self._warned:  # one line per outage, not one per reconnection attempt
                    log.warning("job-change feed: Redis unavailable, waiters re-read slowly until it returns: %s", exc)
                    self._warned = True
            if self.connected.is_set():  # it was up: a new outage, so retry quickly first
                self.connected.clear()  # waiters now re-read at the short interval
                delay = 0.1
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def _listen(self, url: str) -> None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2.0, socket_keepalive=True)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                heard = pinged = time.monotonic()
                while True:
                    message = await pubsub.get_message(timeout=PING_EVERY_S / 2)
                    now = time.monotonic()
                    if message is not None:
                        heard = now
                        kind = message.get("type")
                        if kind == "subscribe":  # confirmed by Redis: from now on nothing is missed
                            self._subscribed()
                        elif kind == "message":
                            self.dispatch(parse(message["data"]))
                    if now - heard > SILENCE_S:
                        raise ConnectionError(f"no answer from Redis for {SILENCE_S:.0f} s")
                    if now - pinged >= PING_EVERY_S:
                        await pubsub.ping()
                        pinged = now
        finally:
            await client.aclose()
