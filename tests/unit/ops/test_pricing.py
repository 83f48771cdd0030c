"""The APIDot credit table (SPEC §4): low 1/2/4, medium 3/6/12, high 12/24/48; success only."""

from __future__ import annotations

import pytest

from imagegen.ops.pricing import credits_for, job_credits, tier


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
    assert credits_for(quality, resolution) == credits


def test_unknown_values_fall_back_to_medium_and_1k() -> None:
    assert tier(None, None) == ("medium", "1K")
    assert tier("ultra", "8K") == ("medium", "1K")
    assert tier("high", None) == ("high", "1K")
    assert tier(3, ["2K"]) == ("medium", "1K")


def test_only_succeeded_apidot_jobs_cost_credits() -> None:
    request = {"quality": "high", "resolution": "4K", "size": "3840x2160"}  # custom WxH: by resolution
    assert job_credits("apidot", "succeeded", request) == 48
    for status in ("failed", "expired", "canceled", "running", "held"):
        assert job_credits("apidot", status, request) == 0
    assert job_credits("openai", "succeeded", request) == 0
    assert job_credits("image2", "succeeded", {}) == 0
