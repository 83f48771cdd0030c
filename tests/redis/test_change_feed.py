"""Job-change announcements over a real Redis: published after commit, fanned out per process, and a
subscription that comes back after Redis restarts wakes every waiter (announcements may have been lost)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import pytest

from imagegen.api.feed import ChangeFeed
from imagegen.devstack import start_redis
from imagegen.store.changes import IDS_PER_MESSAGE, Announcer
from imagegen.store.softredis import fast_client


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), timeout=30))


async def woken(event: asyncio.Event, timeout: float = 3.0) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


def test_an_announcement_wakes_only_the_waiters_of_its_jobs(redis_url: str) -> None:
    announcer = Announcer(fast_client(redis_url))
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> None:
        feed = ChangeFeed(redis_url)
        await feed.start()
        await asyncio.wait_for(feed.connected.wait(), 10)
        with feed.watching([mine]) as a, feed.watching([other]) as b:
            a.clear()
            b.clear()
            announcer.announce([mine])
            assert await woken(a)
            assert not b.is_set()
        assert feed.waiting == 0  # leaving ``watching`` forgets the waiter
        await feed.stop()

    run(scenario)


def test_thousands_of_ids_arrive_in_several_messages(redis_url: str) -> None:
    ids = [str(uuid.uuid4()) for _ in range(IDS_PER_MESSAGE * 2 + 5)]

    async def scenario() -> None:
        feed = ChangeFeed(redis_url)
        await feed.start()
        await asyncio.wait_for(feed.connected.wait(), 10)
        with feed.watching([ids[0]]) as first, feed.watching([ids[-1]]) as last:
            first.clear()
            last.clear()
            Announcer(fast_client(redis_url)).announce(ids)
            assert await woken(first) and await woken(last)
        await feed.stop()

    run(scenario)


def test_a_redis_restart_resubscribes_and_wakes_every_waiter(caplog: pytest.LogCaptureFixture) -> None:
    proc, url = start_redis()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    job = str(uuid.uuid4())

    async def scenario() -> None:
        nonlocal proc
        feed = ChangeFeed(url)
        await feed.start()
        await asyncio.wait_for(feed.connected.wait(), 10)
        with feed.watching([job]) as event:
            event.clear()
            proc.stop()
            await asyncio.sleep(1.0)
            assert not feed.connected.is_set()
            assert not event.is_set()
            proc, _ = start_redis(port)
            # Back: nobody announced anything, but whatever was lost meanwhile must be re-read.
            assert await woken(event, timeout=15)
            assert feed.connected.is_set()
            event.clear()
            Announcer(fast_client(url)).announce([job])
            assert await woken(event)
        await feed.stop()

    try:
        with caplog.at_level(logging.WARNING, logger="imagegen.api.feed"):
            run(scenario)
    finally:
        proc.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # one line per outage


def test_announcing_to_a_dead_redis_fails_soft() -> None:
    announcer = Announcer(fast_client("redis://127.0.0.1:9/0", timeout_s=0.2))
    announcer.announce([str(uuid.uuid4())])  # no exception: announcements are soft state
    announcer.announce([str(uuid.uuid4())])


def test_a_feed_without_redis_still_lets_waiters_wait() -> None:
    async def scenario() -> None:
        feed = ChangeFeed(None)
        await feed.start()
        with feed.watching(["x"]) as event:
            feed.dispatch(["x"])
            assert event.is_set()
        await feed.stop()

    run(scenario)
