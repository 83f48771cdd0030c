"""Scale: thousands of jobs in flight upstream (simulated durations 30–120 s) at once. Samples the peak
RSS of the worker processes and Redis' memory as the in-flight count grows; every job must finish.

Waits longer than ``IMAGEGEN_ETA_MAX_S`` are due times in the database, released by the reconciler, so
worker memory should stay flat however many jobs are in flight (Celery would otherwise hold one ETA
message per job in worker memory; see celery_anchors.md §1.3). Baseline in the same run: the memory of the
same worker idle before the load.

    python -m bench.scale [--jobs 10000]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid

import redis
import sqlalchemy as sa

from bench.stack import BenchStack

ENV = {
    "SIM_DURATION_S": "uniform:30:120",
    "IMAGEGEN_EXPECTED_DURATION_S": "75",
    "IMAGEGEN_ETA_MAX_S": "5",
    "IMAGEGEN_RECONCILE_INTERVAL_S": "1",
    "IMAGEGEN_RELEASE_BATCH": "1000",
    "IMAGEGEN_POLL_CAP_S": "30",
}


def worker_rss_mb(stack: BenchStack) -> float:
    """Resident memory of every worker process (main and prefork children), in MiB."""
    total = 0
    groups = {p.pid for p in stack.procs if p.name.startswith("worker")}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) not in groups:
                continue
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--durations", default="uniform:30:120", help="simulated durations (smoke runs: shorter)")
    args = parser.parse_args()
    stack = BenchStack({**ENV, "SIM_DURATION_S": args.durations}, concurrency=args.concurrency)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    samples: list[tuple[float, int, float, float]] = []
    stop = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            with stack.rt.session() as s:
                running = s.execute(
                    sa.text("SELECT count(*) FROM jobs WHERE status IN ('submitting','running','finalizing')")
                ).scalar_one()
            used = int(client.info("memory")["used_memory"]) / 2**20
            samples.append((time.monotonic() - start, int(running), worker_rss_mb(stack), used))
            stop.wait(2)

    try:
        idle = (worker_rss_mb(stack), int(client.info("memory")["used_memory"]) / 2**20)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        tag = uuid.uuid4().hex[:8]
        ids: list[str] = []
        for chunk in range(0, args.jobs, 1000):
            ids += stack.submit(
                [f"scale {tag} {i}" for i in range(chunk, min(args.jobs, chunk + 1000))], priority="batch"
            )
        done = stack.wait(ids, timeout=3600)
        stop.set()
        sampler.join()
    finally:
        stack.close()
    ok = sum(j.status == "succeeded" for j in done)
    print(f"jobs={args.jobs} succeeded={ok} wall={time.monotonic() - start:.0f}s")
    print(f"idle worker RSS {idle[0]:.0f} MiB, idle redis {idle[1]:.1f} MiB (baseline)")
    print(f"{'in flight':>10} {'worker RSS MiB':>15} {'vs idle':>8} {'redis MiB':>10}")
    shown = set()
    for milestone in (100, 1000, 2500, 5000, 7500, 10_000):
        reached = [s for s in samples if s[1] >= milestone]
        if not reached or milestone in shown:
            continue
        shown.add(milestone)
        peak_rss = max(s[2] for s in samples if s[0] <= reached[0][0])
        peak_redis = max(s[3] for s in samples if s[0] <= reached[0][0])
        print(f"{milestone:>10} {peak_rss:15.0f} {peak_rss / idle[0]:8.2f} {peak_redis:10.1f}")
    print(
        f"{'peak':>10} {max(s[2] for s in samples):15.0f} {max(s[2] for s in samples) / idle[0]:8.2f} "
        f"{max(s[3] for s in samples):10.1f}   (max in flight {max(s[1] for s in samples)})"
    )


if __name__ == "__main__":
    main()
