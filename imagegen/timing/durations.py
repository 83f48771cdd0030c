"""Learned durations: a running median per provider/model/quality/resolution.

The configured table (``IMAGEGEN_EXPECTED_DURATION_S``) is a guess per quality tier; the median of recently
finished jobs measures what this deployment actually sees, so the first poll lands near the real finish
without anyone tuning the table. Samples live in Redis (a capped list per key, shared by every worker);
each process keeps the median for a few seconds so a poll costs no Redis round trip. Redis errors are
soft: no learned value, so the configured one is used.

Also here: pure helpers to blend the two, to extrapolate the remaining time from APIDot's ``progress``, and
to turn what a poller saw into the best estimate of a job's run time (:func:`observed_duration`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import redis

from imagegen.constants import DEFAULT_QUALITY, DEFAULT_RESOLUTION, DURATIONS_PREFIX
from imagegen.store.softredis import RedisGuard

#: The same defaults as ``imagegen.timing.polls.expected_duration``.
KEY_PREFIX = DURATIONS_PREFIX
#: A key nobody finished a job for in a month is forgotten (models come and go).
SAMPLES_TTL_S = 30 * 86_400
#: Cached medians per process; bounded so pass-through model strings cannot grow it forever.
MAX_CACHED_KEYS = 1024
#: A job already finished at its first status call ran for *at most* the wait; recording the full wait
#: would only ever push the median up (a ratchet), so such censored samples are recorded a little lower.
CENSORED_FRACTION = 0.9


def duration_key(provider: str, model: str, quality: str | None = None, resolution: str | None = None) -> str:
    """``provider/model/quality/resolution``, with the defaults the configured table uses."""
    return f"{provider}/{model}/{quality or DEFAULT_QUALITY}/{resolution or DEFAULT_RESOLUTION}"


class DurationLearner:
    """Running medians of upstream durations, shared through Redis.

    ``record`` pushes one sample (newest first, trimmed to ``window``); ``median`` returns the median of
    the last ``window`` samples once ``min_samples`` exist, else None. Medians (and misses) are cached
    in-process for ``cache_ttl_s``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        window: int = 50,
        min_samples: int = 5,
        cache_ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 1 or not 1 <= min_samples <= window:
            raise ValueError(f"need 1 <= min_samples <= window, got min_samples={min_samples} window={window}")
        self.client = client
        self.window = window
        self.min_samples = min_samples
        self.cache_ttl_s = cache_ttl_s
        self.clock = clock
        self.guard = RedisGuard("duration learner", clock=clock)
        self._cache: dict[str, tuple[float, float | None]] = {}

    def record(self, key: str, seconds: float) -> None:
        """Add one finished job's duration; non-finite or negative values are ignored."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        name = f"{KEY_PREFIX}:{key}"

        def push() -> None:
            # One MULTI: the list never holds more than `window` samples, even between the two commands.
            pipe = self.client.pipeline(transaction=True)
            pipe.lpush(name, repr(float(seconds)))
            pipe.ltrim(name, 0, self.window - 1)
            pipe.expire(name, SAMPLES_TTL_S)
            pipe.execute()

        self.guard.call(push, None)
        self._cache.pop(key, None)  # this process sees its own samples at once

    def median(self, key: str) -> float | None:
        """The median of the last ``window`` samples, or None (too few samples, or Redis unreachable)."""
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.cache_ttl_s:
            return cached[1]
        value = self.guard.call(lambda: self._fetch(key), None)
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache.clear()
        # A miss or a failure is cached too: polls must not hammer Redis for a key with no samples yet.
        self._cache[key] = (now, value)
        return value

    def _fetch(self, key: str) -> float | None:
        raw: list[bytes | str] = self.client.lrange(f"{KEY_PREFIX}:{key}", 0, self.window - 1)
        samples = [v for v in (_to_float(r) for r in raw) if v is not None]
        if len(samples) < self.min_samples:
            return None
        return float(statistics.median(samples))


def _to_float(raw: bytes | str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None  # a foreign value under our prefix must not break polling
    return value if math.isfinite(value) and value >= 0 else None


def blend(configured: float, learned: float | None) -> float:
    """The expected duration to schedule the first poll with.

    The learned median wins when there is one: it is measured on this deployment's own recent jobs for the
    same provider/model/quality/resolution (queueing upstream, time of day, account tier), while the
    configured value is a tier-wide guess. The median ignores a few stuck or instant outliers, and
    ``min_samples`` keeps one odd job from steering it.
    """
    if learned is None or not math.isfinite(learned) or learned < 0:
        return configured
    return learned


def estimate_from_progress(elapsed_s: float, progress: float | None) -> float | None:
    """Seconds left, extrapolated linearly from ``progress`` percent done after ``elapsed_s`` seconds.

    None when ``progress`` is missing or outside ``(0, 100)``, or nothing has elapsed (no rate to
    extrapolate). ``imagegen.timing.polls.next_poll_delay`` uses the same formula.
    """
    if progress is None or not 0 < progress < 100 or not elapsed_s > 0 or not math.isfinite(elapsed_s):
        return None
    return elapsed_s * (100 - progress) / progress


def observed_duration(
    detected_s: float, last_running_s: float | None, *, predicted_s: float | None = None, exact: bool = False
) -> float:
    """The sample to :meth:`DurationLearner.record` for a job whose upstream task just finished.

    ``detected_s``: seconds from the accepted submit to the moment we learned it finished; with ``exact``
    (a webhook, sent at the finish) that is the duration. Otherwise a poll found it: it finished between
    the previous "still running" answer at ``last_running_s`` and ``detected_s``. Inside that bracket, a
    ``predicted_s`` finish (that answer's elapsed time + :func:`estimate_from_progress`) is the best
    guess, else the midpoint. With no earlier running answer (the first poll found it done) we only know
    it took at most ``detected_s``, so record :data:`CENSORED_FRACTION` of it: recording the bound itself
    would let the median only ever grow, and the first poll would drift later and later.
    """
    detected_s = max(0.0, detected_s)
    if exact:
        return detected_s
    if last_running_s is None:
        return detected_s * CENSORED_FRACTION
    low = min(max(0.0, last_running_s), detected_s)
    if predicted_s is not None and math.isfinite(predicted_s):
        return min(max(predicted_s, low), detected_s)
    return (low + detected_s) / 2
