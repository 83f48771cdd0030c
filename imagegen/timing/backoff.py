"""Pure retry timing: exponential backoff with full jitter, and ``Retry-After`` parsing."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from config.groups import Backoff

#: Never trust an upstream asking us to wait longer than a day; the job deadline ends it earlier anyway.
MAX_RETRY_AFTER_S = 86_400.0


def compute_backoff(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None, jitter: bool = True
) -> float:
    """Delay before retry number ``attempt`` (1 = first retry): ``min(cap, base * 2**(attempt-1))``.

    With ``jitter`` the delay is drawn uniformly from ``[0, that]`` ("full jitter", AWS architecture
    blog), which spreads a thundering herd of retries evenly instead of in synchronized waves.
    """
    if attempt < 1:
        attempt = 1
    # Cap the exponent so huge attempt counts cannot overflow a float.
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    if not jitter:
        return ceiling
    return (rng or random).uniform(0.0, ceiling)


def retry_delay(attempt: int, policy: Backoff, rng: random.Random | None = None, *, floor: bool = False) -> float:
    """``compute_backoff`` with the configured base and cap (``settings.backoff``); ``floor``: never
    less than the base (so a few quick failures still span a little time)."""
    delay = compute_backoff(attempt, base=policy.base_s, cap=policy.cap_s, rng=rng)
    return max(policy.base_s, delay) if floor else delay


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delay-seconds or an HTTP-date) or ``retry-after-ms``.

    Returns ``None`` when there is no hint: no usable header, or a value of 0, negative or in the past
    (a server clock behind ours). Acting on such a value would retry at once, all callers together, so
    the caller's own backoff applies instead.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            from_ms = _hint(float(raw_ms) / 1000.0)
        except ValueError:
            from_ms = None
        if from_ms is not None:
            return from_ms
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return _hint(float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return _hint((when - current).total_seconds())


def _hint(seconds: float) -> float | None:
    if seconds != seconds or seconds <= 0:  # NaN, zero, negative, past: no hint
        return None
    return min(seconds, MAX_RETRY_AFTER_S)
