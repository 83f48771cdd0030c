"""The informed poll schedule: expected durations with wildcards, growing poll delays."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import DEFAULT_EXPECTED_DURATIONS
from imagegen.timing.polls import JITTER, STEP_FRACTION, expected_duration, first_poll_delay, next_poll_delay


class FixedRng:
    """``uniform`` returns a fixed point of its range: 0.5 is the middle (no jitter)."""

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


NO_JITTER = FixedRng(0.5)


# --- expected_duration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quality", "resolution", "expected"),
    [
        ("low", "1K", 70.0),
        ("medium", "1K", 120.0),
        ("high", "1K", 276.0),
        (None, None, 120.0),
        ("high", "4K", 276.0),
    ],
)
def test_default_table_matches_the_spec_tiers(quality: str | None, resolution: str | None, expected: float) -> None:
    assert expected_duration(DEFAULT_EXPECTED_DURATIONS, "apidot", "gpt-image-2", quality, resolution) == expected


def test_empty_table_falls_back_to_120_seconds() -> None:
    assert expected_duration({}, "apidot", "gpt-image-2", "low", "1K") == 120.0


TABLE = {
    "*/*/*/*": 100.0,
    "apidot/*/low/*": 70.0,
    "apidot/gpt-image-2/low/*": 60.0,
    "apidot/gpt-image-2/low/4K": 50.0,
    "openai/*/*/*": 200.0,
    "*/*/*/2K": 150.0,
    "*/*/medium/*": 110.0,
}


@pytest.mark.parametrize(
    ("provider", "model", "quality", "resolution", "expected"),
    [
        ("apidot", "gpt-image-2", "low", "4K", 50.0),  # all four parts match
        ("apidot", "gpt-image-2", "low", "1K", 60.0),  # three
        ("apidot", "gpt-image-2-edit", "low", "1K", 70.0),  # two
        ("image2", "gpt-image-2", "high", "1K", 100.0),  # only the catch-all
        ("openai", "gpt-image-2", "high", "1K", 200.0),
        ("image2", "x", "high", "2K", 150.0),
        ("image2", "x", None, "1K", 110.0),  # quality defaults to medium
        ("apidot", "gpt-image-2", "low", None, 60.0),  # resolution defaults to 1K
    ],
)
def test_most_specific_pattern_wins(
    provider: str, model: str, quality: str | None, resolution: str | None, expected: float
) -> None:
    assert expected_duration(TABLE, provider, model, quality, resolution) == expected


def test_specificity_does_not_depend_on_table_order() -> None:
    items = list(TABLE.items())
    reversed_table = dict(reversed(items))
    for args in [
        ("apidot", "gpt-image-2", "low", "4K"),
        ("apidot", "gpt-image-2", "low", "1K"),
        ("x", "y", "high", "1K"),
    ]:
        assert expected_duration(reversed_table, *args) == expected_duration(TABLE, *args)


def test_default_resolution_is_1k_and_default_quality_is_medium() -> None:
    table = {"*/*/*/2K": 10.0, "*/*/high/*": 20.0}
    assert expected_duration(table, "apidot", "m", None, None) == 120.0  # neither 2K nor high
    assert expected_duration({"*/*/medium/1K": 33.0}, "apidot", "m", None, None) == 33.0
    assert expected_duration(table, "apidot", "m", None, "2K") == 10.0


def test_malformed_keys_are_ignored() -> None:
    table = {"apidot/low": 1.0, "apidot/gpt-image-2/low/1K/extra": 2.0, "": 3.0, "*/*/*/*": 99.0}
    assert expected_duration(table, "apidot", "gpt-image-2", "low", "1K") == 99.0


def test_zero_means_poll_at_once() -> None:
    assert expected_duration({"*/*/*/*": 0.0}, "apidot", "gpt-image-2", "high", "4K") == 0.0
    assert first_poll_delay(0.0) == 0.0


@pytest.mark.parametrize(("expected_s", "delay"), [(70.0, 56.0), (0.0, 0.0), (-5.0, 0.0), (276.0, 220.8)])
def test_first_poll_delay(expected_s: float, delay: float) -> None:
    assert first_poll_delay(expected_s) == delay


# --- next_poll_delay ------------------------------------------------------------------------------


def _delay(
    polls: int,
    *,
    expected_s: float = 120.0,
    elapsed_s: float = 200.0,
    progress: int | None = None,
    min_s: float = 2.0,
    cap_s: float = 600.0,
    rng: object = NO_JITTER,
) -> float:
    return next_poll_delay(
        polls_while_running=polls,
        expected_s=expected_s,
        elapsed_s=elapsed_s,
        progress=progress,
        min_s=min_s,
        cap_s=cap_s,
        rng=rng,
    )


def test_delay_grows_exponentially_without_progress() -> None:
    delays = [_delay(n) for n in range(1, 7)]
    assert delays == pytest.approx([18.0, 36.0, 72.0, 144.0, 288.0, 576.0])  # 120 * 0.15 * 2**(n-1)
    assert delays[0] == pytest.approx(120.0 * STEP_FRACTION)


def test_delay_reaches_the_cap_and_stays_there() -> None:
    delays = [_delay(n, cap_s=60.0) for n in range(1, 12)]
    assert delays[:3] == pytest.approx([18.0, 36.0, 60.0])
    assert all(d == 60.0 for d in delays[2:])
    assert _delay(10_000, cap_s=60.0) == 60.0  # no overflow for absurd poll counts


@pytest.mark.parametrize("polls", [0, -3])
def test_poll_counts_below_one_count_as_one(polls: int) -> None:
    assert _delay(polls) == _delay(1)


def test_short_expected_durations_use_four_times_the_minimum() -> None:
    # expected 0 (poll at once), min 2 s: the step base is 8 s → 1.2 s, clamped up to the 2 s minimum.
    assert _delay(1, expected_s=0.0) == 2.0
    assert _delay(3, expected_s=0.0) == pytest.approx(4.8)  # 8 * 0.15 * 4


@pytest.mark.parametrize(
    ("elapsed_s", "progress", "expected"),
    [
        (30.0, 50, 31.5),  # half done after 30 s: ~30 s left, aim 5 % later
        (90.0, 75, 31.5),
        (10.0, 10, 94.5),
        (990.0, 99, 10.5),
        (1.0, 1, 103.95),
    ],
)
def test_progress_extrapolates_the_finish(elapsed_s: float, progress: int, expected: float) -> None:
    # Same answer whatever the poll count: progress replaces the exponential schedule.
    for polls in (1, 5):
        assert _delay(polls, elapsed_s=elapsed_s, progress=progress) == pytest.approx(expected)


@pytest.mark.parametrize("progress", [None, 0, 100, -5, 150])
def test_unusable_progress_falls_back_to_the_exponential_schedule(progress: int | None) -> None:
    assert _delay(2, elapsed_s=30.0, progress=progress) == pytest.approx(36.0)


def test_progress_without_elapsed_time_falls_back() -> None:
    assert _delay(1, elapsed_s=0.0, progress=50) == pytest.approx(18.0)


def test_progress_extrapolation_is_clamped() -> None:
    assert _delay(1, elapsed_s=1000.0, progress=1, cap_s=60.0) == 60.0
    assert _delay(1, elapsed_s=1.0, progress=99, min_s=2.0) == 2.0


def test_jitter_is_ten_percent_either_way() -> None:
    assert JITTER == 0.1
    assert _delay(2, rng=FixedRng(0.0)) == pytest.approx(36.0 * 0.9)
    assert _delay(2, rng=FixedRng(1.0)) == pytest.approx(36.0 * 1.1)
    rng = random.Random(3)
    samples = [_delay(2, rng=rng) for _ in range(500)]
    assert all(36.0 * 0.9 <= s <= 36.0 * 1.1 for s in samples)
    assert len(set(samples)) > 450  # jobs submitted together do not poll in lockstep


def test_jitter_never_pushes_past_the_bounds() -> None:
    assert _delay(10, cap_s=60.0, rng=FixedRng(1.0)) == 60.0
    assert _delay(1, expected_s=0.0, rng=FixedRng(0.0)) == 2.0


finite = {"allow_nan": False, "allow_infinity": False}


@settings(max_examples=300, deadline=None)
@given(
    polls=st.integers(min_value=-10, max_value=100_000),
    expected_s=st.floats(min_value=0, max_value=1e6, **finite),
    elapsed_s=st.floats(min_value=0, max_value=1e7, **finite),
    progress=st.none() | st.integers(min_value=-10, max_value=110),
    bounds=st.tuples(st.floats(min_value=0, max_value=1e4, **finite), st.floats(min_value=0, max_value=1e4, **finite))
    .map(sorted)
    .filter(lambda b: b[1] > 0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_is_always_within_min_and_cap(
    polls: int, expected_s: float, elapsed_s: float, progress: int | None, bounds: list[float], seed: int
) -> None:
    min_s, cap_s = bounds
    delay = next_poll_delay(
        polls_while_running=polls,
        expected_s=expected_s,
        elapsed_s=elapsed_s,
        progress=progress,
        min_s=min_s,
        cap_s=cap_s,
        rng=random.Random(seed),
    )
    assert min_s <= delay <= cap_s


@settings(max_examples=200, deadline=None)
@given(
    polls=st.integers(min_value=1, max_value=60),
    expected_s=st.floats(min_value=0, max_value=1e5, **finite),
    min_s=st.floats(min_value=0, max_value=10, **finite),
    cap_s=st.floats(min_value=10, max_value=1e5, **finite),
)
def test_delay_never_shrinks_as_polls_grow(polls: int, expected_s: float, min_s: float, cap_s: float) -> None:
    kwargs = {"expected_s": expected_s, "elapsed_s": 50.0, "progress": None, "min_s": min_s, "cap_s": cap_s}
    assert _delay(polls, **kwargs) <= _delay(polls + 1, **kwargs)


# --- webhook mode applies only to providers given a callback URL -----------------------------------


@pytest.mark.parametrize("provider", ["image2", "openai", "apidot"])
@pytest.mark.parametrize("public_url", [None, "https://queue.example.com"])
def test_webhook_stretch_only_for_providers_that_call_back(provider: str, public_url: str | None) -> None:
    from config.settings import Settings
    from imagegen.timing.polls import poll_cap, uses_progress, webhook_factor
    from imagegen.webhooks.inbound import callback_url

    s = Settings(imagegen_public_url=public_url, imagegen_webhook_poll_factor=4, apidot_webhook_secret="k")
    called_back = callback_url(s, provider, "2b1f6c39-5d0e-4a51-9a43-7d3b8e0f6a11") is not None
    # The one rule: stretched polls, a long cap and no progress extrapolation exactly when a URL is given.
    assert called_back == (public_url is not None and provider == "apidot")
    assert webhook_factor(s, provider) == (4 if called_back else 1)
    assert poll_cap(s, provider) == (s.imagegen_webhook_poll_cap_s if called_back else s.imagegen_poll_cap_s)
    assert uses_progress(s, provider) is not called_back
