"""Exponential backoff with full jitter, and Retry-After parsing (including OpenAI's retry-after-ms)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.timing.backoff import MAX_RETRY_AFTER_S, compute_backoff, parse_retry_after

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class RecordingRng:
    """A stand-in for ``random.Random`` that records ``uniform`` calls and returns a fixed fraction."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a + (b - a) * self.fraction


def _ceiling(attempt: int, base: float, cap: float) -> float:
    exponent = max(attempt, 1) - 1
    if exponent > 1000:  # base * 2**exponent is astronomically above any cap used here
        return cap
    return min(cap, base * 2.0**exponent)


# --- compute_backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 32.0), (7, 60.0), (8, 60.0), (100, 60.0)],
)
def test_backoff_without_jitter_doubles_to_the_cap(attempt: int, expected: float) -> None:
    assert compute_backoff(attempt, base=1.0, cap=60.0, jitter=False) == expected


@pytest.mark.parametrize("attempt", [0, -1, -1000])
def test_backoff_attempts_below_one_count_as_the_first(attempt: int) -> None:
    assert compute_backoff(attempt, base=1.5, cap=60.0, jitter=False) == 1.5


@pytest.mark.parametrize("attempt", [63, 64, 1024, 1025, 10_000, 10**9])
def test_backoff_huge_attempts_do_not_overflow(attempt: int) -> None:
    assert compute_backoff(attempt, base=1.0, cap=60.0, jitter=False) == 60.0
    assert 0.0 <= compute_backoff(attempt, base=1.0, cap=60.0, rng=random.Random(1)) <= 60.0


def test_full_jitter_draws_uniformly_from_zero_to_the_ceiling() -> None:
    rng = RecordingRng(0.25)
    assert compute_backoff(3, base=2.0, cap=60.0, rng=rng) == pytest.approx(2.0)  # 0.25 * 8
    assert rng.calls == [(0.0, 8.0)]
    rng = RecordingRng(1.0)
    assert compute_backoff(10, base=2.0, cap=60.0, rng=rng) == 60.0
    assert rng.calls == [(0.0, 60.0)]


def test_full_jitter_spreads_over_the_whole_range() -> None:
    rng = random.Random(12345)
    samples = [compute_backoff(4, base=1.0, cap=60.0, rng=rng) for _ in range(4000)]
    assert all(0.0 <= s <= 8.0 for s in samples)
    mean = sum(samples) / len(samples)
    assert 3.7 < mean < 4.3  # uniform on [0, 8] has mean 4
    assert min(samples) < 0.1 and max(samples) > 7.9
    # Not synchronized: almost every value is distinct.
    assert len(set(samples)) > 3990


def test_jitter_uses_the_module_random_when_no_rng_given() -> None:
    random.seed(7)
    first = compute_backoff(5, base=1.0, cap=60.0)
    random.seed(7)
    assert compute_backoff(5, base=1.0, cap=60.0) == first
    assert 0.0 <= first <= 16.0


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=-5, max_value=10_000),
    base=st.floats(min_value=1e-3, max_value=1e4, allow_nan=False, allow_infinity=False),
    cap=st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_stays_within_the_full_jitter_range(attempt: int, base: float, cap: float, seed: int) -> None:
    ceiling = _ceiling(attempt, base, cap)
    delay = compute_backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= ceiling
    assert compute_backoff(attempt, base=base, cap=cap, jitter=False) == pytest.approx(ceiling, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=1e-3, max_value=100, allow_nan=False),
    cap=st.floats(min_value=1e-3, max_value=1e5, allow_nan=False),
)
def test_backoff_ceiling_is_monotonic(attempt: int, base: float, cap: float) -> None:
    assert compute_backoff(attempt, base=base, cap=cap, jitter=False) <= compute_backoff(
        attempt + 1, base=base, cap=cap, jitter=False
    )


# --- parse_retry_after ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": "0"}, None),  # 0, negative or past: no hint, the caller's backoff applies
        ({"RETRY-AFTER": " 5 "}, 5.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "1e12"}, MAX_RETRY_AFTER_S),
        ({"Retry-After": "86401"}, MAX_RETRY_AFTER_S),
        ({"Retry-After": "inf"}, MAX_RETRY_AFTER_S),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "Mon, 32 Jan 2024 00:00:00 GMT"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250"}, 0.25),
        ({"retry-after-ms": "-10"}, None),
        ({"retry-after-ms": "9999999999999"}, MAX_RETRY_AFTER_S),
        # retry-after-ms is more precise and wins; garbage in it falls back to Retry-After.
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
        ({"retry-after-ms": "later", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "later"}, None),
        ({}, None),
        ({"x-ratelimit-reset-requests": "1s"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


@pytest.mark.parametrize("offset_s", [1, 30, 3600])
def test_parse_retry_after_http_date_in_the_future(offset_s: int) -> None:
    header = formatdate((NOW + timedelta(seconds=offset_s)).timestamp(), usegmt=True)
    assert header.endswith("GMT")
    assert parse_retry_after({"Retry-After": header}, now=NOW) == float(offset_s)


def test_parse_retry_after_http_date_with_numeric_offset_and_localtime_form() -> None:
    header = formatdate((NOW + timedelta(seconds=90)).timestamp())  # "-0000" form
    assert parse_retry_after({"Retry-After": header}, now=NOW) == 90.0
    assert parse_retry_after({"Retry-After": "Wed, 01 May 2024 14:00:30 +0200"}, now=NOW) == 30.0


def test_parse_retry_after_http_date_in_the_past_is_no_hint() -> None:
    header = formatdate((NOW - timedelta(hours=2)).timestamp(), usegmt=True)
    assert parse_retry_after({"Retry-After": header}, now=NOW) is None


def test_parse_retry_after_far_future_date_is_capped() -> None:
    header = formatdate((NOW + timedelta(days=30)).timestamp(), usegmt=True)
    assert parse_retry_after({"Retry-After": header}, now=NOW) == MAX_RETRY_AFTER_S


def test_parse_retry_after_default_now_is_the_current_time() -> None:
    header = formatdate((datetime.now(UTC) + timedelta(seconds=600)).timestamp(), usegmt=True)
    value = parse_retry_after({"Retry-After": header})
    assert value is not None and 595.0 <= value <= 600.0


def test_parse_retry_after_accepts_httpx_headers() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "3"}), now=NOW) == 3.0
    assert parse_retry_after(httpx.Headers({"content-type": "application/json"}), now=NOW) is None


header_values = st.one_of(
    st.text(max_size=40),
    st.floats().map(repr),
    st.integers().map(str),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")
    ),
    st.from_regex(r"\A[A-Z][a-z]{2}, [0-9]{1,2} [A-Z][a-z]{2} [0-9]{1,4} [0-9:]{1,8} [A-Z+0-9-]{1,5}\Z"),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["Retry-After", "retry-after", "retry-after-ms", "X-Other"]),
        header_values,
        max_size=3,
    )
)
def test_parse_retry_after_is_total_and_bounded(headers: dict[str, str]) -> None:
    value = parse_retry_after(headers, now=NOW)
    assert value is None or (isinstance(value, float) and 0.0 < value <= MAX_RETRY_AFTER_S)
    if not {k.lower() for k in headers} & {"retry-after", "retry-after-ms"}:
        assert value is None
