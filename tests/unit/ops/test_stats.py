"""Pure parts of the statistics: human durations and percentiles."""

from __future__ import annotations

from datetime import timedelta

import pytest

from imagegen.ops import stats as stats_ops
from imagegen.ops.stats import Percentiles, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("30m", 1800), ("2h", 7200), ("30d", 2_592_000), ("1w", 604_800), ("1h30m", 5400), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(stats_ops.format_duration(timedelta(seconds=seconds))).total_seconds() == seconds


@pytest.mark.parametrize("text", ["banana", "", "30", "-5m", "5 parsecs", "m", "3mh", "1e9999d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_percentiles_interpolate() -> None:
    assert Percentiles.of([]) == Percentiles(0, None, None)
    assert Percentiles.of([7.0]) == Percentiles(1, 7.0, 7.0)
    p = Percentiles.of([float(x) for x in range(1, 101)])  # 1..100
    assert p.p50 == pytest.approx(50.5) and p.p95 == pytest.approx(95.05)
