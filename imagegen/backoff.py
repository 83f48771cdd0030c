"""Pure retry timing: exponential backoff with full jitter, and ``Retry-After`` parsing."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

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


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delay-seconds or an HTTP-date) or ``retry-after-ms``.

    Returns ``None`` when no usable header is present. Negative or past values become 0.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return _clamp(float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return _clamp(float(raw))
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
    return _clamp((when - current).total_seconds())


def _clamp(seconds: float) -> float | None:
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_S))
