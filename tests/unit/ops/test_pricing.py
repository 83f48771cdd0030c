"""The APIDot credit table: low 1/2/4, medium 3/6/12, high 12/24/48; success only."""

from __future__ import annotations

import pytest

from imagegen.ops.pricing import CREDITS, tier


@pytest.mark.parametrize(
    ("quality", "resolution", "credits"),
    [
        ("low", "1K", 1),
        ("low", "2K", 2),
        ("low", "4K", 4),
        ("medium", "1K", 3),
        ("medium", "2K", 6),
        ("medium", "4K", 12),
        ("high", "1K", 12),
        ("high", "2K", 24),
        ("high", "4K", 48),
    ],
)
def test_price_table(quality: str, resolution: str, credits: int) -> None:
    q, r = tier(quality, resolution)
    assert CREDITS[q][r] == credits


def test_unknown_values_fall_back_to_medium_and_1k() -> None:
    assert tier(None, None) == ("medium", "1K")
    assert tier("ultra", "8K") == ("medium", "1K")
    assert tier("high", None) == ("high", "1K")
    assert tier(3, ["2K"]) == ("medium", "1K")
