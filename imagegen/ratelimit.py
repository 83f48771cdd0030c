"""A global limiter per provider key, shared by every worker process on every host (issue 6 items 1–2).

Celery's ``rate_limit`` counts per worker instance; four workers at ``R`` send ``4R``. This limiter keeps its
state in Redis and changes it only inside Lua scripts, so all processes see one budget:

* **GCRA** (generic cell rate algorithm): ``rate`` submits per second with ``burst`` allowed at once.
* **Shared not-before**: a 429 with ``Retry-After`` makes every worker wait, not just the one that got it.
* **AIMD**: a 429 halves the effective rate (down to a floor); successes add it back slowly.
* **Concurrency cap**: at most ``max_in_flight`` upstream tasks per provider key (a sorted set of leases).

Times come from ``redis.call('TIME')`` so hosts with skewed clocks agree (tests may inject ``now``, which
must then be on one clock for a given provider). Keys are ``imagegen:rl:{provider}:*``; the braces are a
Redis Cluster hash tag, keeping one provider's keys in one slot as a multi-key script requires. Every key
has a TTL, so idle providers leave nothing behind. Needs Redis ≥ 5 (scripts replicated by effects).

A limiter wait is not an error: callers re-enqueue with that countdown and spend no retry budget.

**Fail open.** If Redis is unreachable, ``acquire`` returns 0.0 and ``try_enter`` returns True (one warning
per outage, then Redis is skipped for a few seconds so a dead server cannot slow every task down). The
limiter protects the provider from us; stopping the whole pipeline because Redis hiccupped would be worse,
and the provider's own 429s (retried with backoff, SPEC §3) still bound us meanwhile.
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

# Shared by every script: the clock (injected, or the server's) and exact float round-trips. Lua numbers
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

# KEYS: tat, not_before, aimd, queue. ARGV: rate, burst, min_fraction, now.
# Grant if the GCRA allows it and the not-before has passed (store the new TAT); else record nothing of the
# budget, but hand out staggered waits (queue += interval) so a crowd of waiters returns in single file.
_ACQUIRE = (
    _PRELUDE
    + """
local now = clock(ARGV[4])
local rate, burst, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local frac = math.min(1, math.max(floor, tonumber(redis.call('HGET', KEYS[3], 'f') or '1')))
local interval = 1 / (rate * frac)
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local earliest = math.max(tat - (burst - 1) * interval, tonumber(redis.call('GET', KEYS[2]) or '0'))
if earliest <= now + 1e-6 then
  redis.call('SET', KEYS[1], fmt(tat + interval), 'PX', ttl_ms(tat + interval - now))
  return {'0', fmt(frac)}
end
local at = math.max(tonumber(redis.call('GET', KEYS[4]) or '0'), earliest)
redis.call('SET', KEYS[4], fmt(at + interval), 'PX', ttl_ms(at + interval - now))
return {fmt(at - now), fmt(frac)}
"""
)

# KEYS: not_before, aimd. ARGV: retry_after, factor, min_fraction, cooldown, aimd_ttl, now.
# not_before = max(existing, now + retry_after); the rate fraction is multiplied by `factor` (floored) unless
# a decrease already happened in this overload window. Returns {seconds until not_before, fraction}.
_PENALIZE = (
    _PRELUDE
    + """
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
)

# KEYS: aimd. ARGV: step, aimd_ttl, now.
# Additive increase: fraction += step, ignoring successes inside the decrease window (requests sent before
# the 429); at 1.0 the key is deleted, since "no key" means "configured rate".
_SUCCESS = (
    _PRELUDE
    + """
local now = clock(ARGV[3])
local frac = tonumber(redis.call('HGET', KEYS[1], 'f') or '1')
if now < tonumber(redis.call('HGET', KEYS[1], 'd') or '0') then return fmt(frac) end
frac = frac + tonumber(ARGV[1])
if frac >= 1 - 1e-9 then redis.call('DEL', KEYS[1]) return '1' end
redis.call('HSET', KEYS[1], 'f', fmt(frac))
redis.call('PEXPIRE', KEYS[1], ttl_ms(tonumber(ARGV[2])))
return fmt(frac)
"""
)

# KEYS: in_flight zset (member = job id, score = lease expiry). ARGV: job_id, lease_s, cap, now.
# Drop expired leases; a job already inside renews its lease (idempotent re-entry); a new one enters only
# while fewer than `cap` are inside. The key's TTL covers its longest lease.
_ENTER = (
    _PRELUDE
    + """
local now = clock(ARGV[4])
local expiry = now + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now))
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current then
  expiry = math.max(expiry, tonumber(current))
elseif redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], fmt(expiry), ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl_ms(expiry - now) then redis.call('PEXPIRE', KEYS[1], ttl_ms(expiry - now)) end
return 1
"""
)


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
    max_in_flight: int | None = None
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
            "max_in_flight must be at least 1": self.max_in_flight is None or self.max_in_flight >= 1,
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
    return {name: f"{base}:{name}" for name in ("tat", "nb", "aimd", "queue", "inflight")}


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
        self._acquire = client.register_script(_ACQUIRE)
        self._penalize = client.register_script(_PENALIZE)
        self._success = client.register_script(_SUCCESS)
        self._enter = client.register_script(_ENTER)
        # Last adaptive fraction seen per provider: at 1.0, record_success has nothing to do (no round trip).
        self._fraction: dict[str, float] = {}

    def config(self, provider: str) -> LimitConfig:
        """The limits of ``provider`` (unlimited when not configured)."""
        return self.rates.get(provider, UNLIMITED)

    def acquire(self, provider: str, now: float | None = None) -> float:
        """0.0 if a submit may go now (and it is counted), else the seconds to wait (nothing is counted).

        Successive refused callers get waits one emission interval apart, so a crowd of re-enqueued jobs
        comes back spread out rather than all at once (then all but one refused again).
        """
        cfg = self.config(provider)
        if cfg.rate_per_s is None:
            return 0.0
        k = keys(provider)
        args = [repr(cfg.rate_per_s), str(cfg.burst), repr(cfg.min_rate_fraction), _arg(now)]
        reply = self.guard.call(lambda: self._acquire(keys=[k["tat"], k["nb"], k["aimd"], k["queue"]], args=args), None)
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

    def try_enter(self, provider: str, job_id: str, lease_s: float, now: float | None = None) -> bool:
        """Take (or renew) one of the provider's in-flight slots for ``job_id`` until ``lease_s`` from now.

        Returns False when ``max_in_flight`` other jobs hold live leases. Idempotent for a job already inside.
        """
        cap = self.config(provider).max_in_flight
        if cap is None:
            return True
        key = keys(provider)["inflight"]
        args = [job_id, repr(float(lease_s)), str(cap), _arg(now)]
        return bool(self.guard.call(lambda: self._enter(keys=[key], args=args), 1))

    def leave(self, provider: str, job_id: str) -> None:
        """Free ``job_id``'s in-flight slot (a no-op if it holds none)."""
        if self.config(provider).max_in_flight is None:
            return
        self.guard.call(lambda: self.client.zrem(keys(provider)["inflight"], job_id), None)

    def in_flight(self, provider: str, now: float | None = None) -> int | None:
        """Jobs holding live leases (for metrics; None when uncapped or Redis is unreachable)."""
        if self.config(provider).max_in_flight is None:
            return None

        def count() -> int:
            current = now if now is not None else _server_time(self.client)
            return int(self.client.zcount(keys(provider)["inflight"], f"({current!r}", "+inf"))

        return self.guard.call(count, None)


def _server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1_000_000
