"""A global limiter per provider key, shared by every worker process on every host.

Celery's ``rate_limit`` counts per worker instance (four workers at ``R`` send ``4R``). Here the state lives
in Redis and changes only inside Lua scripts, so all processes share one budget: **GCRA** (``rate``/s with
``burst`` at once), a **shared not-before** set by any 429's ``Retry-After``, and an **AIMD** effective rate
(a 429 halves it down to a floor; successes add it back slowly). A limiter wait is not an error: callers
re-enqueue with that countdown, no retry budget. A key with **no configured rate** is unlimited until its
first 429; that 429 learns a rate (the submits accepted in the last second), after which the same shared
not-before and AIMD apply. **Interactive before batch**: batch callers reserve slots only a short horizon
ahead and otherwise get a time to ask again, so interactive callers never queue behind a whole batch.
(The concurrency cap per key is counted in the database,
the source of truth, by ``submission``: a flushed Redis cannot forget what is in flight.)

Times come from ``redis.call('TIME')`` so hosts with skewed clocks agree (tests may inject ``now``, on one
clock per provider). Keys are ``imagegen:rl:{provider}:*``: the braces are a Redis Cluster hash tag (one
slot per provider, as multi-key scripts need), and every key has a TTL so idle providers leave nothing.

**Fail open.** If Redis is unreachable, ``acquire`` returns 0.0 (one warning per
outage, then Redis is skipped for a few seconds so a dead server cannot slow every task). The limiter
protects the provider from us; halting the pipeline over a Redis hiccup would be worse, and upstream 429s
(retried with backoff within the job's submit budget) still bound us meanwhile.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from imagegen.constants import RATE_LIMIT_PREFIX
from imagegen.store.softredis import RedisGuard
from imagegen.timing.backoff import MAX_RETRY_AFTER_S

log = logging.getLogger(__name__)

KEY_PREFIX = RATE_LIMIT_PREFIX
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

# The effective rate: configured × the AIMD fraction, or, with no configured rate, the rate learned from
# the first 429 (no learned rate: unlimited). KEYS[3] is the aimd hash. Sets `eff` and `frac`.
_EFFECTIVE = """
local eff, frac
if ARGV[1] == '' then
  local learned = redis.call('HGET', KEYS[3], 'r')
  if not learned then return {'0', '1', 'g'} end
  eff, frac = tonumber(learned), -1
else
  frac = math.min(1, math.max(tonumber(ARGV[3]), tonumber(redis.call('HGET', KEYS[3], 'f') or '1')))
  eff = tonumber(ARGV[1]) * frac
end
"""

# KEYS: tat, not_before, aimd, batch tickets. ARGV: rate ('' = none), burst, min_fraction, now, reserved,
# priority ('i' | 'b'), batch horizon.
# GCRA with reservations: every call that is not a reservation holder takes the next slot (a grant now, or
# a reservation for later, returned as the wait), so waiting callers come back once, at their slot, and go:
# no re-refusals, no thundering herd, and the achieved rate is the configured one. Slots start after the
# shared not-before. A holder (reserved = '1') passes unless a 429's not-before came meanwhile; then it
# takes a fresh slot after it.
# Interactive before batch: a batch caller reserves a slot only within `horizon` seconds. Past it, it
# takes a *ticket* instead: a time to come back (the batch lane, spaced one interval apart so returns do
# not herd) but no slot, so the slots behind the horizon stay free for interactive callers, who therefore
# wait at most about the horizon behind any batch. Each interactive grant pushes the batch lane back one
# interval. Returns {wait, fraction (-1: learned), 'g' go | 'r' reserved | 't' ticket}.
_ACQUIRE = (
    _EFFECTIVE
    + """
local now = clock(ARGV[4])
local burst = tonumber(ARGV[2])
local nb = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[5] == '1' and nb <= now then return {'0', fmt(frac), 'g'} end
local interval = 1 / eff
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now, nb)
local allowed = math.max(tat - (burst - 1) * interval, nb)
local lane = tonumber(redis.call('GET', KEYS[4]) or '0')
if ARGV[6] == 'b' and allowed - now > tonumber(ARGV[7]) then
  local ticket = math.max(lane, allowed)
  redis.call('SET', KEYS[4], fmt(ticket + interval), 'PX', ttl_ms(ticket + interval - now))
  return {fmt(ticket - now), fmt(frac), 't'}
end
redis.call('SET', KEYS[1], fmt(tat + interval), 'PX', ttl_ms(tat + interval - now))
if ARGV[6] == 'i' and lane > now then
  redis.call('SET', KEYS[4], fmt(lane + interval), 'PX', ttl_ms(lane + interval - now))
end
local wait = allowed - now
if wait < 1e-6 then return {'0', fmt(frac), 'g'} end
return {fmt(wait), fmt(frac), 'r'}
"""
)

# KEYS: not_before, aimd, accepted. ARGV: retry_after, factor, min_fraction, cooldown, aimd_ttl, now,
# configured ('1'/'0'), learn window.
# not_before = max(existing, now + retry_after); the rate is multiplied by `factor` (floored) unless a
# decrease already happened in this overload window. With no configured rate, the first 429 *learns* one:
# the submits accepted in the last `window` seconds, per second; later 429s decrease it down to
# `min_fraction` of that. A 429 while nothing was accepted in the window is no evidence of a rate (one job
# retrying on a quiet key): it neither learns nor decreases. With no Retry-After, the not-before is one
# interval at the new rate, so the upstream's bucket can refill before anyone sends again.
# Returns {seconds until not_before, fraction}.
_PENALIZE = """
local now = clock(ARGV[6])
local retry_after = tonumber(ARGV[1])
local floor, factor = tonumber(ARGV[3]), tonumber(ARGV[2])
local quiet = tonumber(redis.call('HGET', KEYS[2], 'd') or '0')
local frac, eff = -1, nil
if ARGV[7] == '1' then
  frac = tonumber(redis.call('HGET', KEYS[2], 'f') or '1')
  if now >= quiet then frac = math.max(floor, frac * factor) end
else
  local window = tonumber(ARGV[8])
  local seen = 0
  for _, t in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    if tonumber(t) > now - window then seen = seen + 1 end
  end
  local learned = redis.call('HGET', KEYS[2], 'r')
  if seen == 0 then
    -- Nothing accepted lately: no evidence of a rate (a lone job's 429s); its own backoff applies.
    quiet = math.huge
  elseif not learned then
    eff = seen / window
    redis.call('HSET', KEYS[2], 'r0', fmt(eff))
    quiet = 0
  else
    eff = tonumber(learned)
    if now >= quiet then eff = math.max(floor * tonumber(redis.call('HGET', KEYS[2], 'r0')), eff * factor) end
  end
end
if now >= quiet then
  local quiet_until = now + math.max(retry_after, tonumber(ARGV[4]))
  if frac >= 0 then redis.call('HSET', KEYS[2], 'f', fmt(frac)) else redis.call('HSET', KEYS[2], 'r', fmt(eff)) end
  redis.call('HSET', KEYS[2], 'd', fmt(quiet_until))
  redis.call('PEXPIRE', KEYS[2], ttl_ms(math.max(tonumber(ARGV[5]), quiet_until - now)))
end
local rate_now = redis.call('HGET', KEYS[2], 'r')
if retry_after <= 0 and frac < 0 and rate_now then retry_after = 1 / tonumber(rate_now) end
local nb = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now + retry_after)
if nb > now then redis.call('SET', KEYS[1], fmt(nb), 'PX', ttl_ms(nb - now)) end
return {fmt(math.max(0, nb - now)), fmt(frac)}
"""

# KEYS: aimd, accepted. ARGV: step, aimd_ttl, now, configured ('1'/'0'), learn window.
# Additive increase: fraction += step (a learned rate: += step × the rate first learned), ignoring
# successes inside the decrease window (requests sent before the 429); at 1.0 the key is deleted, since
# "no key" means "configured rate". With no configured rate, accepted submits are also remembered for a
# window, to learn from at the first 429.
_SUCCESS = """
local now = clock(ARGV[3])
if ARGV[4] == '0' then
  redis.call('LPUSH', KEYS[2], fmt(now))
  redis.call('LTRIM', KEYS[2], 0, 255)
  redis.call('PEXPIRE', KEYS[2], ttl_ms(tonumber(ARGV[5])))
  local learned = redis.call('HGET', KEYS[1], 'r')
  if not learned then return '1' end
  if now < tonumber(redis.call('HGET', KEYS[1], 'd') or '0') then return '-1' end
  local step = tonumber(ARGV[1]) * tonumber(redis.call('HGET', KEYS[1], 'r0'))
  redis.call('HSET', KEYS[1], 'r', fmt(tonumber(learned) + step))
  redis.call('PEXPIRE', KEYS[1], ttl_ms(tonumber(ARGV[2])))
  return '-1'
end
local frac = tonumber(redis.call('HGET', KEYS[1], 'f') or '1')
if now < tonumber(redis.call('HGET', KEYS[1], 'd') or '0') then return fmt(frac) end
frac = frac + tonumber(ARGV[1])
if frac >= 1 - 1e-9 then redis.call('DEL', KEYS[1]) return '1' end
redis.call('HSET', KEYS[1], 'f', fmt(frac))
redis.call('PEXPIRE', KEYS[1], ttl_ms(tonumber(ARGV[2])))
return fmt(frac)
"""


@dataclass(frozen=True)
class LimitConfig:
    """Limits for one provider key; ``None`` means unlimited (no Redis traffic at all for that part)."""

    rate_per_s: float | None
    burst: int = 1
    #: The adaptive rate never drops below this fraction of ``rate_per_s``.
    min_rate_fraction: float = 0.1
    #: Multiplicative decrease applied on a 429.
    decrease_factor: float = 0.5
    #: Additive increase per successful submit, as a fraction of ``rate_per_s`` (0.02: 25 successes 0.5→1);
    #: with no configured rate, as a fraction of the rate learned at the first 429.
    recover_step: float = 0.02
    #: How far ahead a batch job may reserve a slot; past it, it gets a time to come back instead, so an
    #: interactive job never waits behind more than this much batch work.
    batch_horizon_s: float = 2.0

    def __post_init__(self) -> None:
        checks = {
            "rate_per_s must be positive and finite": self.rate_per_s is None or 0 < self.rate_per_s < math.inf,
            "burst must be at least 1": self.burst >= 1,
            "min_rate_fraction must be in (0, 1]": 0 < self.min_rate_fraction <= 1,
            "decrease_factor must be in (0, 1]": 0 < self.decrease_factor <= 1,
            "recover_step must be in [0, 1]": 0 <= self.recover_step <= 1,
            "batch_horizon_s must be positive and finite": 0 < self.batch_horizon_s < math.inf,
        }
        if problems := [message for message, ok in checks.items() if not ok]:
            raise ValueError(f"{'; '.join(problems)}: {self}")

    @classmethod
    def from_mapping(cls, limits: Mapping[str, Any], *, batch_horizon_s: float) -> LimitConfig:
        """One key's entry of ``IMAGEGEN_PROVIDER_LIMITS``; what it leaves out takes the defaults above
        (a key without ``rate_per_s`` learns its rate, so it decreases gently, as ``UNLIMITED`` does)."""
        base = cls(rate_per_s=None, batch_horizon_s=batch_horizon_s)
        rate = limits.get("rate_per_s")
        decrease = base.decrease_factor if rate is not None else LEARNED_DECREASE
        return cls(
            rate_per_s=rate,
            burst=int(limits.get("burst", base.burst)),
            min_rate_fraction=limits.get("min_rate_fraction", base.min_rate_fraction),
            decrease_factor=limits.get("decrease_factor", decrease),
            recover_step=limits.get("recover_step", base.recover_step),
            batch_horizon_s=limits.get("batch_horizon_s", batch_horizon_s),
        )


#: No configured rate: unlimited until the first 429, then a rate learned from it (see ``_PENALIZE``). A
#: learned rate is already the upstream's (what it accepted), so later 429s cut it gently: halving it, as
#: for a configured rate, left a 100-job batch at half the upstream's rate (docs/benchmarks.md).
LEARNED_DECREASE = 0.8
UNLIMITED = LimitConfig(rate_per_s=None, decrease_factor=LEARNED_DECREASE)
#: Accepted submits are remembered this long (seconds) on keys with no configured rate, to learn from.
LEARN_WINDOW_S = 1.0


@dataclass(frozen=True)
class Grant:
    """The limiter's answer: go now (``wait_s`` 0), or come back after ``wait_s``; ``reserved`` says whether a
    slot is held for the caller at that time (else it is a batch caller's time to ask again)."""

    wait_s: float
    reserved: bool


GO = Grant(0.0, False)


def keys(provider: str) -> dict[str, str]:
    """The Redis keys of one provider key (one hash slot)."""
    base = f"{KEY_PREFIX}:{{{provider}}}"
    return {name: f"{base}:{name}" for name in ("tat", "nb", "aimd", "lane", "acc")}


def _arg(now: float | None) -> str:
    return "" if now is None else repr(float(now))


class RateLimiter:
    """The typed facade over the scripts. Safe to share between threads; create one per process.

    ``now`` parameters exist for tests and simulations; production passes nothing and Redis' clock is used.
    Providers missing from ``rates`` get ``default``: no configured rate, so unlimited until a 429 teaches one.
    """

    def __init__(
        self, client: redis.Redis, *, rates: Mapping[str, LimitConfig], default: LimitConfig = UNLIMITED
    ) -> None:
        self.client = client
        self.rates = dict(rates)
        self.default = default
        self.guard = RedisGuard("rate limiter")
        self._acquire = client.register_script(_PRELUDE + _ACQUIRE)
        self._penalize = client.register_script(_PRELUDE + _PENALIZE)
        self._success = client.register_script(_PRELUDE + _SUCCESS)
        # Last adaptive fraction seen per provider: at 1.0, record_success has nothing to do (no round trip).
        self._fraction: dict[str, float] = {}

    def config(self, provider: str) -> LimitConfig:
        """The limits of ``provider`` (``default``, no configured rate, when not configured)."""
        return self.rates.get(provider, self.default)

    def acquire(self, provider: str, now: float | None = None, *, reserved: bool = False) -> float:
        """0.0 if a submit may go now; else the seconds until the slot now reserved for this caller.

        A caller told to wait must come back after that many seconds with ``reserved=True``: it then goes
        at once (its slot is already counted), unless a 429 set a shared not-before in the meantime.
        """
        return self.request(provider, now, reserved=reserved).wait_s

    def request(
        self, provider: str, now: float | None = None, *, reserved: bool = False, priority: str = "interactive"
    ) -> Grant:
        """Like ``acquire``, for a job of ``priority``: a ``batch`` caller is given a slot only within the
        batch horizon; past it, a time to ask again (``reserved`` False), leaving later slots to
        interactive callers. With no configured rate this is one Redis round trip (has a 429 set a
        learned rate?) and unlimited until one has."""
        cfg = self.config(provider)
        k = keys(provider)
        rate = "" if cfg.rate_per_s is None else repr(cfg.rate_per_s)
        args = [rate, str(cfg.burst), repr(cfg.min_rate_fraction), _arg(now), "1" if reserved else "0"]
        args += ["b" if priority == "batch" else "i", repr(cfg.batch_horizon_s)]
        keys_ = [k["tat"], k["nb"], k["aimd"], k["lane"]]
        reply = self.guard.call(lambda: self._acquire(keys=keys_, args=args), None)
        if reply is None:
            return GO
        self._fraction[provider] = float(reply[1])
        kind = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
        return Grant(float(reply[0]), kind == "r")

    def penalize(self, provider: str, retry_after_s: float | None, now: float | None = None) -> float:
        """A 429 came back: every worker waits ``retry_after_s`` (never shortening a longer shared wait) and
        the effective rate drops; with no configured rate, the first 429 learns one. Returns the seconds
        until the shared not-before."""
        cfg = self.config(provider)
        wait = retry_after_s if retry_after_s is not None and math.isfinite(retry_after_s) else 0.0
        wait = min(max(wait, 0.0), MAX_RETRY_AFTER_S)
        k = keys(provider)
        factor, floor = repr(cfg.decrease_factor), repr(cfg.min_rate_fraction)
        configured = "0" if cfg.rate_per_s is None else "1"
        args = [repr(wait), factor, floor, repr(DECREASE_COOLDOWN_S), str(AIMD_TTL_S), _arg(now), configured]
        args.append(repr(LEARN_WINDOW_S))
        reply = self.guard.call(lambda: self._penalize(keys=[k["nb"], k["aimd"], k["acc"]], args=args), None)
        if reply is None:
            return wait
        self._fraction[provider] = float(reply[1])
        return float(reply[0])

    def record_success(self, provider: str, now: float | None = None) -> None:
        """An upstream submit succeeded: let the adaptive rate recover a step (no-op at the full configured
        rate). With no configured rate, the success is also remembered briefly, to learn from."""
        cfg = self.config(provider)
        if cfg.rate_per_s is not None and self._fraction.get(provider, 0.0) >= 1.0:
            return
        k = keys(provider)
        configured = "0" if cfg.rate_per_s is None else "1"
        args = [repr(cfg.recover_step), str(AIMD_TTL_S), _arg(now), configured, repr(LEARN_WINDOW_S)]
        reply = self.guard.call(lambda: self._success(keys=[k["aimd"], k["acc"]], args=args), None)
        if reply is not None:
            self._fraction[provider] = float(reply)

    def effective_rate(self, provider: str) -> float | None:
        """The current adaptive rate in submits/s (None when unlimited or Redis is unreachable)."""
        cfg = self.config(provider)

        def read() -> float | None:
            raw = self.client.hget(keys(provider)["aimd"], "r" if cfg.rate_per_s is None else "f")
            if cfg.rate_per_s is None:
                return None if raw is None else float(raw)
            fraction = 1.0 if raw is None else float(raw)
            return cfg.rate_per_s * min(1.0, max(cfg.min_rate_fraction, fraction))

        return self.guard.call(read, None)
