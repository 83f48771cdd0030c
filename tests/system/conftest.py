"""Private stacks (chaos, webhooks, safety): each gets its own Redis, database, simulator, worker and beat."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from imagegen import devstack
from tests.support.stack import Stack, StackFactory, start_stack


@pytest.fixture
def private_stack(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackFactory]:
    """``make(**env)`` → (stack, redis process, redis port). Everything is stopped after the test."""
    made: list[tuple[Stack, devstack.Process]] = []

    def make(**env: str) -> tuple[Stack, devstack.Process, str]:
        redis_proc, redis_url = devstack.start_redis()
        stack = start_stack(redis_url, database_factory(), tmp_path_factory, **env)
        made.append((stack, redis_proc))
        return stack, redis_proc, redis_url

    yield make
    for stack, redis_proc in made:
        stack.close()
        redis_proc.stop()
