"""Learned durations: running medians in Redis, blending, extrapolation."""

from __future__ import annotations

import logging
import math
import random
import statistics
import time
import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegen.devstack import free_port
from imagegen.store.softredis import fast_client
from imagegen.timing.durations import (
    CENSORED_FRACTION,
    KEY_PREFIX,
    SAMPLES_TTL_S,
    DurationLearner,
    blend,
    duration_key,
    estimate_from_progress,
    observed_duration,
)
from imagegen.timing.polls import next_poll_delay
from tests.support.clock import FakeClock

DURATIONS = st.floats(0.0, 3600.0, allow_nan=False)


def fresh_key() -> str:
    return duration_key("apidot", f"m-{uuid.uuid4().hex[:8]}", "high", "2K")


# --- the learner -----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples=st.lists(DURATIONS, max_size=30), window=st.integers(1, 12), min_samples=st.integers(1, 12))
def test_median_matches_statistics_over_the_window(
    client: redis.Redis, samples: list[float], window: int, min_samples: int
) -> None:
    min_samples = min(min_samples, window)
    learner = DurationLearner(client, window=window, min_samples=min_samples, cache_ttl_s=0)
    key = fresh_key()
    for s in samples:
        learner.record(key, s)
    recent = samples[-window:]
    if len(recent) < min_samples:
        assert learner.median(key) is None
    else:
        assert learner.median(key) == pytest.approx(statistics.median(recent))


def test_window_is_trimmed_in_redis(client: redis.Redis) -> None:
    learner = DurationLearner(client, window=50, min_samples=5, cache_ttl_s=0)
    key = fresh_key()
    for s in range(60):
        learner.record(key, float(s))
    assert client.llen(f"{KEY_PREFIX}:{key}") == 50
    assert 0 < client.ttl(f"{KEY_PREFIX}:{key}") <= SAMPLES_TTL_S
    assert learner.median(key) == statistics.median(range(10, 60))


def test_min_samples_and_invalid_values(client: redis.Redis) -> None:
    learner = DurationLearner(client, window=10, min_samples=3, cache_ttl_s=0)
    key = fresh_key()
    for bad in (float("nan"), float("inf"), -1.0):
        learner.record(key, bad)
    learner.record(key, 100.0)
    learner.record(key, 80.0)
    assert learner.median(key) is None  # two valid samples: not enough
    learner.record(key, 90.0)
    assert learner.median(key) == 90.0


def test_foreign_values_are_skipped(client: redis.Redis) -> None:
    learner = DurationLearner(client, window=10, min_samples=1, cache_ttl_s=0)
    key = fresh_key()
    client.lpush(f"{KEY_PREFIX}:{key}", "junk", "nan", "-3", "42")
    assert learner.median(key) == 42.0


def test_cache_ttl(client: redis.Redis) -> None:
    clock = FakeClock()
    poller = DurationLearner(client, window=10, min_samples=1, cache_ttl_s=10.0, clock=clock)
    finisher = DurationLearner(client, window=10, min_samples=1, cache_ttl_s=10.0)  # another process
    key = fresh_key()
    assert poller.median(key) is None  # a miss is cached too
    finisher.record(key, 50.0)
    clock.now = 9.9
    assert poller.median(key) is None
    clock.now = 10.0
    assert poller.median(key) == 50.0
    finisher.record(key, 70.0)
    clock.now = 15.0
    assert poller.median(key) == 50.0  # served from the cache, no round trip
    poller.record(key, 90.0)  # its own sample drops its own cache entry
    assert poller.median(key) == 70.0


def test_dead_redis_fails_soft(caplog: pytest.LogCaptureFixture) -> None:
    learner = DurationLearner(fast_client(f"redis://127.0.0.1:{free_port()}/0"), cache_ttl_s=0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        learner.record("apidot/m/medium/1K", 10.0)
        assert learner.median("apidot/m/medium/1K") is None
        assert learner.median("apidot/m/low/1K") is None
    assert time.monotonic() - started < 2.0
    assert len([r for r in caplog.records if "duration learner" in r.message]) == 1


def test_constructor_validation(client: redis.Redis) -> None:
    with pytest.raises(ValueError):
        DurationLearner(client, window=5, min_samples=6)
    with pytest.raises(ValueError):
        DurationLearner(client, window=5, min_samples=0)


def test_duration_key_defaults_match_the_schedule_table() -> None:
    assert duration_key("apidot", "gpt-image-2") == "apidot/gpt-image-2/medium/1K"
    assert duration_key("openai", "gpt-image-2", "low", None) == "openai/gpt-image-2/low/1K"


# --- pure helpers ----------------------------------------------------------------------------------------


def test_blend_prefers_the_learned_median() -> None:
    assert blend(120.0, None) == 120.0
    assert blend(120.0, 95.5) == 95.5
    assert blend(120.0, 0.0) == 0.0  # instant upstreams learn to poll at once
    assert blend(120.0, float("nan")) == 120.0
    assert blend(120.0, -3.0) == 120.0


@pytest.mark.parametrize(
    ("elapsed", "progress", "expected"),
    [(30.0, 25, 90.0), (60.0, 50, 60.0), (99.0, 99, 1.0), (10.0, 0, None), (10.0, 100, None), (10.0, None, None)],
)
def test_estimate_from_progress(elapsed: float, progress: int | None, expected: float | None) -> None:
    assert estimate_from_progress(elapsed, progress) == (pytest.approx(expected) if expected is not None else None)
    assert estimate_from_progress(0.0, 50) is None


@given(elapsed=st.floats(0.01, 3600.0), progress=st.integers(1, 99))
def test_estimate_from_progress_is_what_next_poll_delay_extrapolates(elapsed: float, progress: int) -> None:
    """Pins the two to one formula until schedule.next_poll_delay calls estimate_from_progress itself."""
    remaining = estimate_from_progress(elapsed, progress)
    assert remaining is not None and remaining >= 0
    delay = next_poll_delay(
        polls_while_running=1,
        expected_s=120.0,
        elapsed_s=elapsed,
        progress=progress,
        min_s=0.0,
        cap_s=math.inf,
        rng=random.Random(0),
    )
    assert delay == pytest.approx(remaining * 1.05, rel=0.1 + 1e-9)  # within next_poll_delay's ±10 % jitter


@given(detected=DURATIONS, last=st.none() | DURATIONS, predicted=st.none() | st.floats(-10.0, 7200.0))
def test_observed_duration_stays_within_what_is_known(
    detected: float, last: float | None, predicted: float | None
) -> None:
    sample = observed_duration(detected, last, predicted_s=predicted)
    assert 0.0 <= sample <= detected
    if last is not None and last <= detected:
        assert last <= sample
    assert observed_duration(detected, last, exact=True) == detected


def test_observed_duration_cases() -> None:
    assert observed_duration(120.0, 90.0) == 105.0  # finished between the two polls
    assert observed_duration(120.0, 90.0, predicted_s=100.0) == 100.0  # progress pinned it inside the bracket
    assert observed_duration(120.0, 90.0, predicted_s=300.0) == 120.0  # a prediction past the bracket is clamped
    assert observed_duration(120.0, None) == 120.0 * CENSORED_FRACTION  # done at the first poll: at most 120
    assert observed_duration(47.0, None, exact=True) == 47.0  # a webhook arrives at the finish
