"""A global limiter per provider key, shared by every worker process on every host (issue 6 items 1–2).

Celery's ``rate_limit`` counts per worker instance (four workers at ``R`` send ``4R``). Here the state lives
in Redis and changes only inside Lua scripts, so all processes share one budget: **GCRA** (``rate``/s with
``burst`` at once), a **shared not-before** set by any 429's ``Retry-After``, and an **AIMD** effective rate
(a 429 halves it down to a floor; successes add it back slowly). A limiter wait is not an error: callers
re-enqueue with that countdown, no retry budget. (The concurrency cap per key is counted in the database,
the source of truth, by ``submission``: a flushed Redis cannot forget what is in flight.)

Times come from ``redis.call('TIME')`` so hosts with skewed clocks agree (tests may inject ``now``, on one
clock per provider). Keys are ``imagegen:rl:{provider}:*``: the braces are a Redis Cluster hash tag (one
slot per provider, as multi-key scripts need), and every key has a TTL so idle providers leave nothing.

**Fail open.** If Redis is unreachable, ``acquire`` returns 0.0 (one warning per
outage, then Redis is skipped for a few seconds so a dead server cannot slow every task). The limiter
protects the provider from us; halting the pipeline over a Redis hiccup would be worse, and upstream 429s
(retried with backoff, SPEC §3) still bound us meanwhile.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from imagegen.backoff import MAX_RETRY_AFTER_S

log = logging.getLogger(__name__)

T = TypeVar("T")

KEY_PREFIX = "imagegen:rl"
#: Adaptive state outlives a burst of 429s, then is forgotten (back to the configured rate) when idle.
AIMD_TTL_S = 3600
#: 429s within this many seconds of a decrease (or before its not-before passes) are the same overload:
#: requests already in flight when the first 429 came back must not halve the rate again and again.
DECREASE_COOLDOWN_S = 1.0

# Prepended to every script: the clock (injected, or the server's) and exact float round-trips. Lua numbers
# returned to Redis are truncated to integers, so scripts return floats as strings.
_PRELUDE = """
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
local function ttl_ms(seconds) return math.max(1, math.ceil(seconds * 1000)) + 1000 end
"""

# KEYS: tat, not_before, aimd. ARGV: rate, burst, min_fraction, now, reserved.
# GCRA with reservations: every call that is not a reservation holder takes the next slot (a grant now, or
# a reservation for later, returned as the wait), so waiting callers come back once, at their slot, and go:
# no re-refusals, no thundering herd, and the achieved rate is the configured one. Slots start after the
# shared not-before. A holder (reserved = '1') passes unless a 429's not-before came meanwhile; then it
# takes a fresh slot after it.
_ACQUIRE = """
local now = clock(ARGV[4])
local rate, burst, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local frac = math.min(1, math.max(floor, tonumber(redis.call('HGET', KEYS[3], 'f') or '1')))
local nb = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[5] == '1' and nb <= now then return {'0', fmt(frac)} end
local interval = 1 / (rate * frac)
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now, nb)
local allowed = math.max(tat - (burst - 1) * interval, nb)
redis.call('SET', KEYS[1], fmt(tat + interval), 'PX', ttl_ms(tat + interval - now))
local wait = allowed - now
if wait < 1e-6 then wait = 0 end
return {fmt(wait), fmt(frac)}
"""

# KEYS: not_before, aimd. ARGV: retry_after, factor, min_fraction, cooldown, aimd_ttl, now.
# not_before = max(existing, now + retry_after); the rate fraction is multiplied by `factor` (floored) unless
# a decrease already happened in this overload window. Returns {seconds until not_before, fraction}.
_PENALIZE = """
local now = clock(ARGV[6])
local retry_after = tonumber(ARGV[1])
local nb = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now + retry_after)
if nb > now then redis.call('SET', KEYS[1], fmt(nb), 'PX', ttl_ms(nb - now)) end
local frac = tonumber(redis.call('HGET', KEYS[2], 'f') or '1')
if now >= tonumber(redis.call('HGET', KEYS[2], 'd') or '0') then
  frac = math.max(tonumber(ARGV[3]), frac * tonumber(ARGV[2]))
  local quiet_until = now + math.max(retry_after, tonumber(ARGV[4]))
  redis.call('HSET', KEYS[2], 'f', fmt(frac), 'd', fmt(quiet_until))
  redis.call('PEXPIRE', KEYS[2], ttl_ms(math.max(tonumber(ARGV[5]), quiet_until - now)))
end
return {fmt(math.max(0, nb - now)), fmt(frac)}
"""

# KEYS: aimd. ARGV: step, aimd_ttl, now.
# Additive increase: fraction += step, ignoring successes inside the decrease window (requests sent before
# the 429); at 1.0 the key is deleted, since "no key" means "configured rate".
_SUCCESS = """
local now = clock(ARGV[3])
local frac = tonumber(redis.call('HGET', KEYS[1], 'f') or '1')
if now < tonumber(redis.call('HGET', KEYS[1], 'd') or '0') then return fmt(frac) end
frac = frac + tonumber(ARGV[1])
if frac >= 1 - 1e-9 then redis.call('DEL', KEYS[1]) return '1' end
redis.call('HSET', KEYS[1], 'f', fmt(frac))
redis.call('PEXPIRE', KEYS[1], ttl_ms(tonumber(ARGV[2])))
return fmt(frac)
"""


def fast_client(url: str, *, timeout_s: float = 0.5) -> redis.Redis:
    """A client for the limiter: short timeouts and no retries, so a dead Redis costs one quick failure.

    redis-py's default client retries ten times with backoff, which would make each fail-open call slow.
    """
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


class RedisGuard:
    """Runs Redis calls fail-soft: an error returns the fallback, logs one warning per outage, and skips
    Redis for ``cooldown_s`` so every caller does not pay a connect timeout while it is down."""

    def __init__(self, what: str, *, cooldown_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.down = False
        self._skip_until = -math.inf

    def call(self, fn: Callable[[], T], fallback: T) -> T:
        """``fn()``, or ``fallback`` if Redis is failing (or failed less than ``cooldown_s`` ago)."""
        now = self.clock()
        if now < self._skip_until:
            return fallback
        try:
            result = fn()
        except (redis.RedisError, OSError) as exc:
            self._skip_until = now + self.cooldown_s
            if not self.down:
                self.down = True
                log.warning("%s: Redis unavailable, failing open until it returns: %s", self.what, exc)
            return fallback
        if self.down:
            self.down = False
            log.info("%s: Redis is back", self.what)
        return result


@dataclass(frozen=True)
class LimitConfig:
    """Limits for one provider key; ``None`` means unlimited (no Redis traffic at all for that part)."""

    rate_per_s: float | None
    burst: int = 1
    #: The adaptive rate never drops below this fraction of ``rate_per_s``.
    min_rate_fraction: float = 0.1
    #: Multiplicative decrease applied on a 429.
    decrease_factor: float = 0.5
    #: Additive increase per successful submit, as a fraction of ``rate_per_s`` (0.02: 25 successes 0.5→1).
    recover_step: float = 0.02

    def __post_init__(self) -> None:
        checks = {
            "rate_per_s must be positive and finite": self.rate_per_s is None or 0 < self.rate_per_s < math.inf,
            "burst must be at least 1": self.burst >= 1,
            "min_rate_fraction must be in (0, 1]": 0 < self.min_rate_fraction <= 1,
            "decrease_factor must be in (0, 1]": 0 < self.decrease_factor <= 1,
            "recover_step must be in [0, 1]": 0 <= self.recover_step <= 1,
        }
        if problems := [message for message, ok in checks.items() if not ok]:
            raise ValueError(f"{'; '.join(problems)}: {self}")


UNLIMITED = LimitConfig(rate_per_s=None)


def keys(provider: str) -> dict[str, str]:
    """The Redis keys of one provider key (one hash slot)."""
    base = f"{KEY_PREFIX}:{{{provider}}}"
    return {name: f"{base}:{name}" for name in ("tat", "nb", "aimd")}


def _arg(now: float | None) -> str:
    return "" if now is None else repr(float(now))


class RateLimiter:
    """The typed facade over the scripts. Safe to share between threads; create one per process.

    ``now`` parameters exist for tests and simulations; production passes nothing and Redis' clock is used.
    Providers missing from ``rates`` are unlimited.
    """

    def __init__(self, client: redis.Redis, *, rates: Mapping[str, LimitConfig]) -> None:
        self.client = client
        self.rates = dict(rates)
        self.guard = RedisGuard("rate limiter")
        self._acquire = client.register_script(_PRELUDE + _ACQUIRE)
        self._penalize = client.register_script(_PRELUDE + _PENALIZE)
        self._success = client.register_script(_PRELUDE + _SUCCESS)
        # Last adaptive fraction seen per provider: at 1.0, record_success has nothing to do (no round trip).
        self._fraction: dict[str, float] = {}

    def config(self, provider: str) -> LimitConfig:
        """The limits of ``provider`` (unlimited when not configured)."""
        return self.rates.get(provider, UNLIMITED)

    def acquire(self, provider: str, now: float | None = None, *, reserved: bool = False) -> float:
        """0.0 if a submit may go now; else the seconds until the slot now reserved for this caller.

        A caller told to wait must come back after that many seconds with ``reserved=True``: it then goes
        at once (its slot is already counted), unless a 429 set a shared not-before in the meantime.
        """
        cfg = self.config(provider)
        if cfg.rate_per_s is None:
            return 0.0
        k = keys(provider)
        args = [repr(cfg.rate_per_s), str(cfg.burst), repr(cfg.min_rate_fraction), _arg(now), "1" if reserved else "0"]
        reply = self.guard.call(lambda: self._acquire(keys=[k["tat"], k["nb"], k["aimd"]], args=args), None)
        if reply is None:
            return 0.0
        self._fraction[provider] = float(reply[1])
        return float(reply[0])

    def penalize(self, provider: str, retry_after_s: float | None, now: float | None = None) -> float:
        """A 429 came back: every worker waits ``retry_after_s`` (never shortening a longer shared wait) and
        the effective rate drops. Returns the seconds until the shared not-before."""
        cfg = self.config(provider)
        wait = retry_after_s if retry_after_s is not None and math.isfinite(retry_after_s) else 0.0
        wait = min(max(wait, 0.0), MAX_RETRY_AFTER_S)
        if cfg.rate_per_s is None:
            return wait
        k = keys(provider)
        factor, floor = repr(cfg.decrease_factor), repr(cfg.min_rate_fraction)
        args = [repr(wait), factor, floor, repr(DECREASE_COOLDOWN_S), str(AIMD_TTL_S), _arg(now)]
        reply = self.guard.call(lambda: self._penalize(keys=[k["nb"], k["aimd"]], args=args), None)
        if reply is None:
            return wait
        self._fraction[provider] = float(reply[1])
        return float(reply[0])

    def record_success(self, provider: str, now: float | None = None) -> None:
        """An upstream submit succeeded: let the adaptive rate recover a step (no-op at the full rate)."""
        cfg = self.config(provider)
        if cfg.rate_per_s is None or self._fraction.get(provider, 0.0) >= 1.0:
            return
        k = keys(provider)
        args = [repr(cfg.recover_step), str(AIMD_TTL_S), _arg(now)]
        reply = self.guard.call(lambda: self._success(keys=[k["aimd"]], args=args), None)
        if reply is not None:
            self._fraction[provider] = float(reply)

    def effective_rate(self, provider: str) -> float | None:
        """The current adaptive rate in submits/s (None when unlimited or Redis is unreachable)."""
        cfg = self.config(provider)
        if cfg.rate_per_s is None:
            return None

        def read() -> float | None:
            raw = self.client.hget(keys(provider)["aimd"], "f")
            return 1.0 if raw is None else float(raw)

        fraction = self.guard.call(read, None)
        if fraction is None:
            return None
        return cfg.rate_per_s * min(1.0, max(cfg.min_rate_fraction, fraction))
