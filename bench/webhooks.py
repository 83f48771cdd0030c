"""Webhook mode vs polling mode on the same workload: detection lag and upstream calls per job.

Detection lag = job ``finished_at`` (our database) − the moment the simulated upstream task finished.
Both runs use the same simulator duration distribution and the same expected duration.

    python bench/webhooks.py [--jobs 40]
"""

from __future__ import annotations

import argparse
import statistics
import uuid
from collections import Counter

from bench.stack import BenchStack

COMMON = {
    "SIM_DURATION_S": "uniform:3:9",
    "IMAGEGEN_EXPECTED_DURATION_S": "6",
    "IMAGEGEN_POLL_MIN_S": "0.5",
    "IMAGEGEN_POLL_CAP_S": "5",
    "IMAGEGEN_RECONCILE_INTERVAL_S": "1",
    "APIDOT_WEBHOOK_SECRET": "bench-secret",
    "SIM_WEBHOOK_RETRY_BASE_S": "0.5",
}


def measure(mode: str, jobs: int) -> dict[str, float]:
    """Run ``jobs`` jobs in ``mode`` (``polling`` or ``webhook``) and return the figures."""
    stack = BenchStack(COMMON, with_api=mode == "webhook")
    try:
        tag = uuid.uuid4().hex[:8]
        ids = stack.submit([f"{mode} {tag} {i}" for i in range(jobs)])
        done = stack.wait(ids, timeout=180)
        tasks = stack.tasks()
        calls = Counter(r["task_id"] for r in stack.records() if r["endpoint"] in ("submit", "status"))
        lags = [
            j.finished_at.timestamp() - tasks[j.upstream_task_id]["finish_at"]  # type: ignore[union-attr]
            for j in done
            if j.upstream_task_id in tasks
        ]
        return {
            "succeeded": sum(j.status == "succeeded" for j in done),
            "lag_mean": statistics.fmean(lags),
            "lag_p95": sorted(lags)[int(0.95 * (len(lags) - 1))],
            "calls": statistics.fmean(calls[j.upstream_task_id] for j in done),
            "polls": statistics.fmean(j.polls for j in done),
        }
    finally:
        stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    args = parser.parse_args()
    results = {mode: measure(mode, args.jobs) for mode in ("polling", "webhook")}
    print(f"{'mode':8} {'ok':>4} {'lag mean s':>10} {'lag p95 s':>9} {'calls/job':>9} {'polls/job':>9}")
    for mode, r in results.items():
        print(
            f"{mode:8} {r['succeeded']:4.0f} {r['lag_mean']:10.2f} {r['lag_p95']:9.2f} {r['calls']:9.2f} "
            f"{r['polls']:9.2f}"
        )
    p, w = results["polling"], results["webhook"]
    print(
        f"\nwebhook / polling: lag {w['lag_mean'] / p['lag_mean']:.2f}x, upstream calls {w['calls'] / p['calls']:.2f}x"
    )


if __name__ == "__main__":
    main()
