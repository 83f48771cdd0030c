"""Global rate limit: the simulator accepts R submits/s per account; 4 worker instances submit a batch.

Ours, configured: ``IMAGEGEN_PROVIDER_LIMITS`` sets R (one Redis GCRA shared by all workers). Ours, learned:
nothing configured, so the first 429 teaches the shared limiter a rate (then AIMD). Baseline: Celery's own
``rate_limit`` of R/s on ``imagegen.submit``, set on the same 4 workers (it counts per worker instance).
The simulator's 429s carry no Retry-After (APIDot promises none) unless ``--retry-after``.
Reported: accepted submits per second over the run, and the share of submit calls answered 429.

    python -m bench.ratelimit [--rate 10] [--jobs 500] [--retry-after]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import httpx

from bench.stack import BenchStack

COMMON = {
    "SIM_DURATION_S": "1",
    "IMAGEGEN_EXPECTED_DURATION_S": "1",
    "IMAGEGEN_RECONCILE_INTERVAL_S": "1",
    "IMAGEGEN_MAX_SUBMITS_RATE_LIMITED": "1000",
    "IMAGEGEN_BACKOFF_CAP_S": "5",
}


MODES = {"ours": "ours (Redis GCRA)", "learned": "ours, learned (no config)", "celery": "celery rate_limit"}


def run(mode: str, rate: float, jobs: int, retry_after: bool = False) -> dict[str, float]:
    """One run in ``mode`` (``ours``, ``learned`` or ``celery``)."""
    env = dict(COMMON)
    if mode == "ours":
        env["IMAGEGEN_PROVIDER_LIMITS"] = json.dumps({"apidot": {"rate_per_s": rate, "burst": 1}})
    stack = BenchStack(env, workers=4, concurrency=2)
    try:
        config = {"submit_rate": rate, "submit_rate_retry_after": retry_after}
        httpx.post(f"{stack.sim_url}/_sim/config", json=config, timeout=10).raise_for_status()
        if mode == "celery":
            control = stack.bare_producer()
            # The stack is ready once one worker serves; the others may still be starting, so repeat the
            # (idempotent) broadcast until all four have answered.
            deadline = time.monotonic() + 60
            while len(replies := control.control.rate_limit("imagegen.submit", f"{rate}/s", reply=True, timeout=5)) < 4:
                assert time.monotonic() < deadline, f"rate_limit reached {len(replies)} workers"
        httpx.delete(f"{stack.sim_url}/_sim/requests", timeout=10)
        tag = uuid.uuid4().hex[:8]
        start = time.monotonic()
        ids = stack.submit([f"rl {tag} {i}" for i in range(jobs)], priority="batch")
        done = stack.wait(ids, timeout=jobs / rate * 4 + 120)
        elapsed = time.monotonic() - start
        submits = [r for r in stack.records() if r["endpoint"] == "submit"]
        accepted = [r["time"] for r in submits if r["status_code"] == 200]
        span = max(accepted) - min(accepted)
        return {
            "ok": sum(j.status == "succeeded" for j in done),
            "rate": (len(accepted) - 1) / span if span > 0 else float("nan"),
            "share_429": sum(r["status_code"] == 429 for r in submits) / len(submits),
            "calls": len(submits),
            "elapsed": elapsed,
        }
    finally:
        stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--retry-after", action="store_true", help="429s carry Retry-After: 1")
    args = parser.parse_args()
    results = {mode: run(mode, args.rate, args.jobs, args.retry_after) for mode in MODES}
    hint = "Retry-After: 1" if args.retry_after else "no Retry-After"
    print(f"R={args.rate:g} submits/s ({hint}), {args.jobs} jobs, 4 worker instances x 2 processes")
    print(f"{'limiter':26} {'ok':>5} {'rate/s':>8} {'vs R':>6} {'429 share':>10} {'submit calls':>13} {'wall s':>7}")
    for mode, r in results.items():
        print(
            f"{MODES[mode]:26} {r['ok']:5.0f} {r['rate']:8.2f} {r['rate'] / args.rate:6.2f} {r['share_429']:10.1%} "
            f"{r['calls']:13.0f} {r['elapsed']:7.1f}"
        )


if __name__ == "__main__":
    main()
