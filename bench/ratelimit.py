"""Global rate limit: the simulator accepts R submits/s per account; 4 worker instances submit 500 jobs.

Ours: ``IMAGEGEN_PROVIDER_LIMITS`` (one Redis GCRA shared by all workers). Baseline: Celery's own
``rate_limit`` of R/s on ``imagegen.submit``, set on the same 4 workers (it counts per worker instance).
Reported: accepted submits per second over the run, and the share of submit calls answered 429.

    python -m bench.ratelimit [--rate 10] [--jobs 500]
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


def run(mode: str, rate: float, jobs: int) -> dict[str, float]:
    """One run in ``mode`` (``ours`` or ``celery``)."""
    env = dict(COMMON)
    if mode == "ours":
        env["IMAGEGEN_PROVIDER_LIMITS"] = json.dumps({"apidot": {"rate_per_s": rate, "burst": 1}})
    stack = BenchStack(env, workers=4, concurrency=2)
    try:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"submit_rate": rate}, timeout=10)
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
    args = parser.parse_args()
    results = {mode: run(mode, args.rate, args.jobs) for mode in ("ours", "celery")}
    print(f"R={args.rate:g} submits/s, {args.jobs} jobs, 4 worker instances x 2 processes")
    print(f"{'limiter':22} {'ok':>5} {'rate/s':>8} {'vs R':>6} {'429 share':>10} {'submit calls':>13} {'wall s':>7}")
    for mode, r in results.items():
        name = "ours (Redis GCRA)" if mode == "ours" else "celery rate_limit"
        print(
            f"{name:22} {r['ok']:5.0f} {r['rate']:8.2f} {r['rate'] / args.rate:6.2f} {r['share_429']:10.1%} "
            f"{r['calls']:13.0f} {r['elapsed']:7.1f}"
        )


if __name__ == "__main__":
    main()
