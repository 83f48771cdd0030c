"""The shared Redis limiter: GCRA, shared not-before, AIMD, concurrency cap, fail-open.

Runs against a private redis-server. Most tests inject ``now`` (a simulated clock on one key) so they are
exact and instant; the thread and process tests use Redis' own clock.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegen.devstack import free_port
from imagegen.providers.limits import AIMD_TTL_S, LimitConfig, RateLimiter, keys
from imagegen.store.softredis import RedisGuard, fast_client

T0 = 1_000_000.0


@pytest.fixture
def provider() -> str:
    """A fresh provider name per test, so tests never share limiter state."""
    return f"p-{uuid.uuid4().hex[:8]}"


def limiter(client: redis.Redis, provider: str, **config: float | int | None) -> RateLimiter:
    cfg = {"rate_per_s": 10.0, "burst": 3, **config}
    return RateLimiter(client, rates={provider: LimitConfig(**cfg)})


# --- GCRA ----------------------------------------------------------------------------------------------


def test_burst_is_immediate_then_one_interval(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=10.0, burst=3)
    assert [rl.acquire(provider, T0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.acquire(provider, T0) == pytest.approx(0.1)  # a reservation of the next slot
    assert rl.acquire(provider, T0 + 0.1, reserved=True) == 0.0  # the holder goes at its slot
    assert rl.acquire(provider, T0 + 0.1) == pytest.approx(0.1)  # a newcomer gets the slot after it


def test_refused_callers_are_spaced_one_interval_apart(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=10.0, burst=1)
    assert rl.acquire(provider, T0) == 0.0
    waits = [rl.acquire(provider, T0) for _ in range(4)]
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4])  # each one a distinct reserved slot
    assert rl.acquire(provider, T0 + 0.1) == pytest.approx(0.4)  # slots 0.1-0.4 are taken


def test_simulated_second_admits_rate_times_t_plus_burst(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=20.0, burst=5)
    slots = [T0 + i / 1000 + rl.acquire(provider, T0 + i / 1000) for i in range(1001)]  # every ms for 1 s
    assert sum(slot <= T0 + 1.0 + 1e-6 for slot in slots) in (25, 26)  # burst + rate * t (+1, closed end)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.floats(0.5, 50.0),
    burst=st.integers(1, 8),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=60),
)
def test_no_window_ever_exceeds_burst_plus_rate(
    client: redis.Redis, rate: float, burst: int, gaps: list[float]
) -> None:
    name = f"h-{uuid.uuid4().hex[:8]}"
    rl = limiter(client, name, rate_per_s=rate, burst=burst)
    now, slots = T0, []
    for gap in gaps:
        now += gap
        wait = rl.acquire(name, now)
        assert wait >= 0.0
        slots.append(now + wait)  # when this caller will submit (now, or at its reserved slot)
    slots.sort()
    for i, start in enumerate(slots):
        for j in range(i, len(slots)):
            assert j - i + 1 <= burst + rate * (slots[j] - start) + 1e-6


def test_unconfigured_key_fails_open_on_a_dead_redis() -> None:
    dead = fast_client(f"redis://127.0.0.1:{free_port()}/0")
    rl = RateLimiter(dead, rates={"p": LimitConfig(rate_per_s=None, burst=1)})
    assert rl.acquire("p") == 0.0 and rl.acquire("not-configured") == 0.0
    assert rl.penalize("p", 5.0) == 5.0
    rl.record_success("p")


def test_keys_share_a_hash_slot_and_expire(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=10.0, burst=1)
    rl.acquire(provider)
    rl.acquire(provider)  # refused: sets the waiters' queue key
    rl.penalize(provider, 3.0)
    rl.request(provider, priority="batch")  # past the horizon: a ticket (the batch lane key)
    learned = RateLimiter(client, rates={})
    learned.record_success(provider + "-x")  # an unconfigured key remembers accepted submits
    assert all(f"{{{provider}}}" in key for key in keys(provider).values())
    ours = [key for name, key in keys(provider).items() if name != "acc"]
    for key in [*ours, keys(provider + "-x")["acc"]]:
        assert 0 < client.pttl(key) <= (AIMD_TTL_S + 1) * 1000, key


# --- concurrency: threads and processes on Redis' clock --------------------------------------------------


def test_threads_get_distinct_slots(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=50.0, burst=5)
    waits: list[float] = []

    def hammer() -> None:
        for _ in range(40):
            waits.append(rl.acquire(provider, T0))

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 240 callers at one instant: 5 go at once, the others hold one slot each, 1/50 s apart.
    expected = [0.0] * 5 + [k / 50.0 for k in range(1, 236)]
    assert sorted(waits) == pytest.approx(expected)


def _hammer(url: str, provider: str, go: Any, calls: int, out: Any) -> None:
    """Child process: say ready, then take ``calls`` slots at one injected instant; report the waits."""
    rl = limiter(fast_client(url), provider, rate_per_s=40.0, burst=8)
    out.put(-1)
    go.wait(30)
    out.put([rl.acquire(provider, T0) for _ in range(calls)])


def test_four_processes_get_distinct_slots(redis_url: str, client: redis.Redis, provider: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(redis_url, provider, go, 50, out)) for _ in range(4)]
    for p in procs:
        p.start()
    assert [out.get(timeout=60) for _ in procs] == [-1] * 4  # all imported and connected
    go.set()
    waits = sorted(w for _ in procs for w in out.get(timeout=60))
    for p in procs:
        p.join(10)
    # Atomic across processes: every caller got its own slot, none twice, none skipped.
    assert waits == pytest.approx([0.0] * 8 + [k / 40.0 for k in range(1, 193)])


# --- shared not-before and AIMD --------------------------------------------------------------------------


def test_penalize_blocks_every_worker_until_not_before(client: redis.Redis, redis_url: str, provider: str) -> None:
    worker_a = limiter(client, provider, rate_per_s=100.0, burst=10)
    worker_b = limiter(fast_client(redis_url), provider, rate_per_s=100.0, burst=10)
    assert worker_a.penalize(provider, 5.0, T0) == pytest.approx(5.0)
    assert worker_b.acquire(provider, T0 + 1) == pytest.approx(4.0)
    assert worker_a.penalize(provider, 2.0, T0 + 1) == pytest.approx(4.0)  # never shortens a longer wait
    assert worker_b.acquire(provider, T0 + 5) == 0.0


def test_penalize_on_redis_clock(client: redis.Redis, redis_url: str, provider: str) -> None:
    worker_a = limiter(client, provider)
    worker_b = limiter(fast_client(redis_url), provider)
    worker_a.penalize(provider, 0.3)
    assert 0.2 < worker_b.acquire(provider) <= 0.3
    time.sleep(0.3)
    assert worker_b.acquire(provider) == 0.0


def test_adaptive_rate_halves_then_recovers(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=10.0, burst=1, recover_step=0.1)
    assert rl.effective_rate(provider) == 10.0
    rl.penalize(provider, 0.0, T0)
    assert rl.effective_rate(provider) == pytest.approx(5.0)
    rl.penalize(provider, 0.0, T0 + 0.5)  # the same overload (within the cooldown): no second halving
    assert rl.effective_rate(provider) == pytest.approx(5.0)
    assert rl.acquire(provider, T0 + 2) == 0.0
    assert rl.acquire(provider, T0 + 2) == pytest.approx(0.2)  # the interval doubled
    rl.record_success(provider, T0 + 0.9)  # a request sent before the 429: does not count
    assert rl.effective_rate(provider) == pytest.approx(5.0)
    for i in range(4):
        rl.record_success(provider, T0 + 2 + i)
    assert rl.effective_rate(provider) == pytest.approx(9.0)
    rl.record_success(provider, T0 + 7)
    assert rl.effective_rate(provider) == 10.0
    assert not client.exists(keys(provider)["aimd"])  # back to the configured rate: no state left


def test_adaptive_rate_has_a_floor(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=10.0, min_rate_fraction=0.2)
    for i in range(10):
        rl.penalize(provider, 0.0, T0 + 2 * i)
    assert rl.effective_rate(provider) == pytest.approx(2.0)


def test_record_success_at_full_rate_costs_no_round_trip(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider)
    rl.acquire(provider)
    before = client.info("stats")["total_commands_processed"]
    rl.record_success(provider)
    assert client.info("stats")["total_commands_processed"] == before + 1  # only the INFO itself


def test_dead_redis_fails_open_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    dead = fast_client(f"redis://127.0.0.1:{free_port()}/0")
    rl = RateLimiter(dead, rates={"p": LimitConfig(rate_per_s=1.0, burst=1)})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="imagegen.providers.limits"):
        assert [rl.acquire("p") for _ in range(5)] == [0.0] * 5
        assert rl.penalize("p", 3.0) == 3.0
        rl.record_success("p")
        assert rl.effective_rate("p") is None
    assert time.monotonic() - started < 2.0
    assert len([r for r in caplog.records if "failing open" in r.message]) == 1


def test_guard_skips_redis_during_cooldown_then_retries() -> None:
    now = [0.0]
    guard = RedisGuard("test", cooldown_s=5.0, clock=lambda: now[0])
    calls = []

    def failing() -> int:
        calls.append(now[0])
        raise redis.ConnectionError("down")

    assert guard.call(failing, -1) == -1 and guard.down
    now[0] = 4.0
    assert guard.call(failing, -1) == -1 and calls == [0.0]  # skipped: no connect attempt
    now[0] = 5.0
    assert guard.call(lambda: 7, -1) == 7 and not guard.down


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_per_s": 0.0},
        {"rate_per_s": float("inf")},
        {"burst": 0},
        {"min_rate_fraction": 0.0},
        {"min_rate_fraction": 1.5},
        {"decrease_factor": 0.0},
        {"recover_step": -0.1},
    ],
)
def test_config_validation(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LimitConfig(**{"rate_per_s": 1.0, "burst": 1, **bad})


def _server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1_000_000


# --- interactive before batch ------------------------------------------------------------------------


def test_batch_reserves_only_within_its_horizon(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=5.0, burst=1, batch_horizon_s=2.0)
    grants = [rl.request(provider, T0, priority="batch") for _ in range(150)]
    reserved = [g for g in grants if g.reserved or g.wait_s == 0]
    assert [g.wait_s for g in reserved] == pytest.approx([k * 0.2 for k in range(11)])  # up to 2 s ahead
    tickets = [g.wait_s for g in grants[11:]]
    assert not any(g.reserved for g in grants[11:])
    assert tickets == pytest.approx([2.2 + k * 0.2 for k in range(139)])  # spaced: no herd on return
    # An interactive job goes right after the horizon, not after the whole batch (30 s).
    urgent = rl.request(provider, T0, priority="interactive")
    assert urgent.reserved and urgent.wait_s == pytest.approx(2.2)
    # ... and pushes the batch lane back one interval.
    assert rl.request(provider, T0, priority="batch").wait_s == pytest.approx(2.2 + 139 * 0.2 + 0.2)


def test_batch_tickets_come_back_to_free_slots(client: redis.Redis, provider: str) -> None:
    rl = limiter(client, provider, rate_per_s=5.0, burst=1, batch_horizon_s=1.0)
    first = [rl.request(provider, T0, priority="batch") for _ in range(20)]
    sent = [T0 for g in first if g.wait_s == 0]
    pending = [(T0 + g.wait_s, g.reserved) for g in first if g.wait_s > 0]
    while pending:  # every caller returns when told; record when each actually goes
        pending.sort()
        at, holder = pending.pop(0)
        g = rl.request(provider, at, reserved=holder, priority="batch")
        if g.wait_s == 0:
            sent.append(at)
        else:
            pending.append((at + g.wait_s, g.reserved))
    assert len(sent) == 20
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.2 - 1e-6  # the rate holds
    assert sent[-1] - T0 == pytest.approx(19 * 0.2)  # and nothing is wasted


# --- learning a limit nobody configured --------------------------------------------------------------


def test_first_429_learns_the_accepted_rate(client: redis.Redis, provider: str) -> None:
    rl = RateLimiter(client, rates={})
    assert rl.acquire(provider, T0) == 0.0  # unlimited until a 429
    for i in range(4):
        rl.record_success(provider, T0 + 0.1 * i)  # 4 accepted in the last second
    assert rl.effective_rate(provider) is None
    wait = rl.penalize(provider, None, T0 + 0.5)
    assert rl.effective_rate(provider) == pytest.approx(4.0)
    assert wait == pytest.approx(0.25)  # no Retry-After: one interval of shared not-before
    assert [rl.acquire(provider, T0 + 0.5) for _ in range(3)] == pytest.approx([0.25, 0.5, 0.75])
    rl.penalize(provider, None, T0 + 0.6)  # the same overload: no second decrease
    assert rl.effective_rate(provider) == pytest.approx(4.0)
    rl.record_success(provider, T0 + 0.9)  # sent before the 429: no increase, but proof of traffic
    rl.penalize(provider, None, T0 + 1.5)
    assert rl.effective_rate(provider) == pytest.approx(3.2)  # a gentle multiplicative decrease (x0.8)
    rl.record_success(provider, T0 + 4)
    assert rl.effective_rate(provider) == pytest.approx(3.2 + 0.02 * 4.0)  # slow additive increase


def test_learned_rate_has_a_floor(client: redis.Redis, provider: str) -> None:
    rl = RateLimiter(client, rates={}, default=LimitConfig(None, min_rate_fraction=0.25))
    rl.record_success(provider, T0)
    rl.penalize(provider, None, T0)  # learns 1/s
    for i in range(10):
        rl.record_success(provider, T0 + 2 * (i + 1) - 0.1)
        rl.penalize(provider, None, T0 + 2 * (i + 1))
    assert rl.effective_rate(provider) == pytest.approx(0.25)


def test_a_lone_429_on_a_quiet_key_learns_nothing(client: redis.Redis, provider: str) -> None:
    rl = RateLimiter(client, rates={})
    for i in range(10):  # one job retrying on a key that accepted nothing lately
        assert rl.penalize(provider, None, T0 + 4 * i) == 0.0
        assert rl.penalize(provider, 3.0, T0 + 4 * i) == pytest.approx(3.0)  # a Retry-After still holds
    assert rl.effective_rate(provider) is None
    assert rl.acquire(provider, T0 + 50) == 0.0
    rl.record_success(provider, T0 + 50)
    rl.penalize(provider, None, T0 + 50.5)
    rl.record_success(provider, T0 + 60)
    rl.penalize(provider, None, T0 + 65)  # learned, but nothing accepted in the last second: no decrease
    assert rl.effective_rate(provider) == pytest.approx(1.0 + 0.02)
