"""Job-change announcements over a real Redis: published after commit, fanned out per process, and a
subscription that comes back after Redis restarts wakes every waiter (announcements may have been lost)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

import pytest

from imagegen.api import feed as feed_module
from imagegen.api.feed import ChangeFeed
from imagegen.devstack import start_redis
from imagegen.store.announcer import Announcer
from imagegen.store.changes import CHANNEL, IDS_PER_MESSAGE, parse
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


def test_a_frozen_connection_is_noticed_and_replaced(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A link that stops answering without closing (a failover with no TCP reset) counts as down after
    ``SILENCE_S``; the feed subscribes again and wakes its waiters."""
    monkeypatch.setattr(feed_module, "PING_EVERY_S", 0.3)
    monkeypatch.setattr(feed_module, "SILENCE_S", 1.0)
    host, port = "127.0.0.1", int(redis_url.rsplit(":", 1)[1].split("/")[0])
    frozen = asyncio.Event()
    thawed = asyncio.Event()
    job = str(uuid.uuid4())

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if frozen.is_set():
                    await thawed.wait()  # hold it: neither forward nor close
                    return
                writer.write(data)
                await writer.drain()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, port)
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    async def scenario() -> None:
        proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
        proxy_port = proxy.sockets[0].getsockname()[1]
        feed = ChangeFeed(f"redis://127.0.0.1:{proxy_port}/0")
        await feed.start()
        await asyncio.wait_for(feed.connected.wait(), 10)
        with feed.watching([job]) as event:
            frozen.set()
            started = asyncio.get_running_loop().time()
            while feed.connected.is_set():
                await asyncio.sleep(0.1)
            assert asyncio.get_running_loop().time() - started < 5
            frozen.clear()  # new connections pass again
            event.clear()
            assert await woken(event, timeout=15)  # resubscribed: every waiter re-reads
            event.clear()
            Announcer(fast_client(redis_url)).announce([job])
            assert await woken(event)
        thawed.set()
        await feed.stop()
        proxy.close()

    run(scenario)


def test_ids_that_could_not_be_published_go_out_with_the_next_announcement(redis_url: str) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    announcer = Announcer(fast_client(redis_url))
    sub = fast_client(redis_url, timeout_s=2).pubsub()
    sub.subscribe(CHANNEL)
    assert sub.get_message(timeout=2) is not None  # the subscribe confirmation
    announcer._guard._skip_until = float("inf")  # as after a timeout: Redis is skipped for a while
    announcer.announce([first])
    announcer._guard._skip_until = -float("inf")
    announcer.announce([second])
    message = sub.get_message(timeout=2)
    assert message is not None and sorted(parse(message["data"])) == sorted([first, second])
    sub.close()
