"""Settings read as value groups: the same numbers as the flat env vars, and backoff from its group."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from config.groups import Backoff
from config.settings import Settings
from imagegen.timing.backoff import compute_backoff, retry_delay


def test_groups_mirror_the_flat_fields() -> None:
    s = Settings(
        imagegen_backoff_base_s=2,
        imagegen_backoff_cap_s=30,
        imagegen_max_poll_errors=4,
        imagegen_dispatch_grace_s=77,
        imagegen_poll_min_s=3,
        imagegen_http_read_timeout_s=12,
    )
    assert s.backoff == Backoff(2.0, 30.0)
    assert s.budgets.poll_errors == 4
    assert s.timers.dispatch_grace_s == 77
    assert s.polling.min_s == 3
    assert s.http.read_s == 12


def test_a_copy_with_changes_is_never_stale() -> None:
    s = Settings(imagegen_backoff_base_s=1)
    assert s.model_copy(update={"imagegen_backoff_base_s": 5.0}).backoff.base_s == 5.0


@given(
    attempt=st.integers(min_value=-3, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=100),
    extra=st.floats(min_value=0, max_value=1000),
    seed=st.integers(min_value=0, max_value=2**32),
    floor=st.booleans(),
)
def test_retry_delay_is_compute_backoff_with_the_group(
    attempt: int, base: float, extra: float, seed: int, floor: bool
) -> None:
    policy = Backoff(base, base + extra)
    got = retry_delay(attempt, policy, random.Random(seed), floor=floor)
    plain = compute_backoff(attempt, base=base, cap=base + extra, rng=random.Random(seed))
    assert got == (max(base, plain) if floor else plain)
    assert (base if floor else 0.0) <= got <= base + extra
