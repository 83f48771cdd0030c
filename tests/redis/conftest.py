"""A private Redis per test module (never the machine's shared one), and a client with short timeouts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from imagegen.devstack import start_redis
from imagegen.store.softredis import fast_client


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    proc, url = start_redis()
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return fast_client(redis_url)
