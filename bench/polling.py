"""Polling efficiency: status calls per job and detection lag, informed schedule vs the usual baselines.

The schedules are pure functions, so this replays each policy against the same sampled job durations
(lognormal, sigma 0.3, around the default expected durations: low 70 s, medium 120 s, high 276 s), with the
real ``imagegen.timing.polls`` code for our policy and the simulator's linear ``progress`` model. Time is
scaled down by --scale for the printed seconds only; ratios do not depend on it.

    python bench/polling.py [--jobs 3000] [--scale 20] [--seed 7]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable, Iterator

from imagegen.timing.polls import first_poll_delay, next_poll_delay

TIERS = {"low": 70.0, "medium": 120.0, "high": 276.0}
#: The simulator reports "not_started" (progress 0) for the first 10 % of a task.
NOT_STARTED = 0.10

Policy = Callable[[float, random.Random], Iterator[float]]


def progress_at(t: float, duration: float) -> int | None:
    """What the upstream reports at ``t`` (None once finished)."""
    if t >= duration:
        return None
    return 0 if t < NOT_STARTED * duration else min(99, int(99 * t / duration))


def informed(expected: float, use_progress: bool) -> Callable[[float, random.Random], Iterator[float]]:
    """Our schedule: first poll near the expected duration, then progress extrapolation or backoff."""

    def times(duration: float, rng: random.Random) -> Iterator[float]:
        t = first_poll_delay(expected)
        polls = 0
        while True:
            yield t
            polls += 1
            progress = progress_at(t, duration) if use_progress else None
            t += next_poll_delay(
                polls_while_running=polls,
                expected_s=expected,
                elapsed_s=t,
                progress=progress,
                min_s=2.0,
                cap_s=60.0,
                rng=rng,
            )

    return times


def fixed(interval: float) -> Policy:
    """What the providers' own examples do: sleep ``interval``, poll, repeat."""

    def times(duration: float, rng: random.Random) -> Iterator[float]:
        t = interval
        while True:
            yield t
            t += interval

    return times


def exponential(base: float, cap: float) -> Policy:
    """Plain exponential backoff: base, 2·base, 4·base... capped."""

    def times(duration: float, rng: random.Random) -> Iterator[float]:
        t, step = base, base
        while True:
            yield t
            step = min(cap, step * 2)
            t += step

    return times


def run(policy: Policy, durations: list[float], seed: int) -> tuple[float, float, float]:
    """(mean status calls per job, mean lag in seconds, mean lag as a fraction of the job's duration)."""
    rng = random.Random(seed)
    calls, lags, fractions = [], [], []
    for duration in durations:
        for n, t in enumerate(policy(duration, rng), start=1):
            if t >= duration:
                calls.append(n)
                lags.append(t - duration)
                fractions.append((t - duration) / duration)
                break
    return statistics.fmean(calls), statistics.fmean(lags), statistics.fmean(fractions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per tier")
    parser.add_argument("--scale", type=float, default=20.0, help="divide printed seconds by this")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"{'tier':8} {'policy':28} {'calls/job':>9} {'mean lag':>9} {'lag/dur':>8}   (seconds ÷{args.scale:g})")
    totals: dict[str, list[tuple[float, float]]] = {}
    for tier, mean in TIERS.items():
        rng = random.Random(args.seed)
        # Lognormal with sigma 0.3 whose *mean* is the tier mean.
        mu = math.log(mean) - 0.3**2 / 2
        durations = [rng.lognormvariate(mu, 0.3) for _ in range(args.jobs)]
        policies: dict[str, Policy] = {
            "informed + progress (ours)": informed(mean, use_progress=True),
            "informed, no progress (ours)": informed(mean, use_progress=False),
            "fixed 5 s": fixed(5.0),
            "exponential 2 s x2, cap 60 s": exponential(2.0, 60.0),
        }
        for name, policy in policies.items():
            calls, lag, fraction = run(policy, durations, args.seed)
            totals.setdefault(name, []).append((calls, fraction))
            print(f"{tier:8} {name:28} {calls:9.2f} {lag / args.scale:9.2f} {fraction:8.1%}")
    print()
    base_calls = statistics.fmean(c for c, _ in totals["fixed 5 s"])
    for name, rows in totals.items():
        calls = statistics.fmean(c for c, _ in rows)
        fraction = statistics.fmean(f for _, f in rows)
        print(
            f"{'all':8} {name:28} {calls:9.2f} {'':9} {fraction:8.1%}   calls vs fixed 5 s: {calls / base_calls:.2f}x"
        )


if __name__ == "__main__":
    main()
