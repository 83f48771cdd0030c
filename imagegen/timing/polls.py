"""The informed poll schedule: pure functions, no I/O.

The first poll comes near the expected duration for the job's provider/model/quality/resolution; later
polls back off exponentially (with jitter) to a cap, or, when the upstream reports ``progress``,
aim at the extrapolated finish time.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from config.settings import Settings
from imagegen.timing.durations import estimate_from_progress

#: Fraction of the expected duration waited after the first "still running" answer; doubles each time.
STEP_FRACTION = 0.15
#: ±10 % jitter so jobs submitted together do not poll in lockstep.
JITTER = 0.1


def expected_duration(
    table: Mapping[str, float], provider: str, model: str, quality: str | None, resolution: str | None
) -> float:
    """Look up ``provider/model/quality/resolution`` in ``table``; the most specific pattern wins."""
    parts = (provider, model, quality or "medium", resolution or "1K")
    best: tuple[int, float] | None = None
    for key, seconds in table.items():
        pattern = key.split("/")
        if len(pattern) != 4 or not all(p in ("*", v) for p, v in zip(pattern, parts, strict=True)):
            continue
        specificity = sum(p != "*" for p in pattern)
        if best is None or specificity > best[0]:
            best = (specificity, seconds)
    return best[1] if best else 120.0


#: The first poll comes a little before the expected finish: a job found still running then reports a
#: ``progress`` that pins its finish time, and one more poll lands just after it (bench/polling.py).
FIRST_POLL_FRACTION = 0.8


def first_poll_delay(expected_s: float) -> float:
    """Wait for most of the expected duration before the first status call."""
    return max(0.0, expected_s * FIRST_POLL_FRACTION)


def next_poll_delay(
    *,
    polls_while_running: int,
    expected_s: float,
    elapsed_s: float,
    progress: int | None,
    min_s: float,
    cap_s: float,
    rng: random.Random | None = None,
) -> float:
    """Delay before the next status call after ``polls_while_running`` answers of "not finished yet".

    With a usable ``progress`` (1–99) the remaining time is extrapolated linearly from the elapsed time;
    otherwise the wait grows as ``expected * 0.15 * 2**(n-1)``. Always within ``[min_s, cap_s]``.
    """
    n = max(1, polls_while_running)
    remaining = estimate_from_progress(elapsed_s, progress)
    if remaining is not None:
        delay = remaining * 1.05  # aim just after the estimated finish
    else:
        base = max(expected_s, min_s * 4)
        delay = base * STEP_FRACTION * 2.0 ** min(n - 1, 30)
    delay = min(cap_s, max(min_s, delay))
    factor = 1.0 + (rng or random).uniform(-JITTER, JITTER)
    return min(cap_s, max(min_s, delay * factor))


#: Providers that take a ``callback_url`` and call it when a task ends (image2 documents no webhook;
#: openai is synchronous). Only their jobs have a webhook to rely on.
CALLBACK_PROVIDERS = frozenset({"apidot"})


def calls_back(settings: Settings, provider: str) -> bool:
    """Whether jobs on ``provider`` are given a callback URL (a public URL is set and it takes one)."""
    return bool(settings.imagegen_public_url) and provider in CALLBACK_PROVIDERS


def webhook_factor(settings: Settings, provider: str) -> float:
    """How much longer polls wait when the provider calls back (the poll is then only a safety net)."""
    return settings.polling.webhook_factor if calls_back(settings, provider) else 1.0


def poll_cap(settings: Settings, provider: str) -> float:
    """The longest wait between polls: much longer when the provider calls back (polls are a safety net)."""
    return settings.polling.webhook_cap_s if calls_back(settings, provider) else settings.polling.cap_s


def uses_progress(settings: Settings, provider: str) -> bool:
    """Whether to aim polls at the finish time extrapolated from ``progress``: not when a webhook comes."""
    return not calls_back(settings, provider)
