"""Scale: thousands of jobs in flight upstream (simulated durations 30–120 s) at once. Samples the peak
memory (PSS) of the worker processes and Redis' memory as the in-flight count grows; every job must finish.

Waits longer than ``IMAGEGEN_ETA_MAX_S`` are due times in the database, released by the reconciler, so
worker memory should stay flat however many jobs are in flight (Celery would otherwise hold one ETA
message per job in worker memory; see celery#9849). Baseline in the same run: the memory of the
same worker idle before the load.

    python -m bench.scale [--jobs 10000]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import redis
import sqlalchemy as sa

from bench.stack import BenchStack, group_mem_mb

ENV = {
    "SIM_DURATION_S": "uniform:30:120",
    "IMAGEGEN_EXPECTED_DURATION_S": "75",
    "IMAGEGEN_ETA_MAX_S": "5",
    "IMAGEGEN_RECONCILE_INTERVAL_S": "1",
    "IMAGEGEN_RELEASE_BATCH": "1000",
    "IMAGEGEN_POLL_CAP_S": "30",
}


def redis_mb(client: redis.Redis) -> float:
    """Redis' ``used_memory``, in MiB."""
    return int(client.info("memory")["used_memory"]) / 2**20


def countdown_baseline(stack: BenchStack, jobs: int, concurrency: int) -> tuple[float, float, float, float]:
    """The naive design in the same run: one countdown message per in-flight job (``self.retry(countdown=…)``
    polling) on a bare Celery worker with Celery's default ``worker_eta_task_limit`` (none). Returns worker
    memory (PSS) and Redis memory (MiB), idle and once the worker holds every message."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    proc = stack.start_bare_worker("naive", queues="naive", concurrency=concurrency, env={"BENCH_NAIVE_ETA": "1"})
    try:
        producer = stack.bare_producer()
        time.sleep(4)  # worker ready
        idle = peak = (group_mem_mb({proc.pid}), redis_mb(client))
        for _ in range(jobs):
            # A poll due in 10 minutes for a job that does not exist: it never runs during the measurement.
            producer.send_task("bench.touch", args=[str(uuid.uuid4()), 1], queue="naive", countdown=600)
        deadline = time.monotonic() + 300
        settle = 5  # samples after the queue is empty: the last messages are still being taken in
        while settle and time.monotonic() < deadline:
            time.sleep(1)
            peak = (max(peak[0], group_mem_mb({proc.pid})), max(peak[1], redis_mb(client)))
            if client.llen("naive") == 0:
                settle -= 1
        return idle[0], idle[1], peak[0], peak[1]
    finally:
        proc.kill_group()
        client.delete("naive", "unacked", "unacked_index")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--durations", default="uniform:30:120", help="simulated durations (smoke runs: shorter)")
    args = parser.parse_args()
    env = {**ENV, "SIM_DURATION_S": args.durations}
    if args.durations.startswith("uniform:"):
        low, high = (float(x) for x in args.durations.split(":")[1:3])
        env["IMAGEGEN_EXPECTED_DURATION_S"] = str((low + high) / 2)  # what an operator would configure
    stack = BenchStack(env, concurrency=args.concurrency)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    samples: list[tuple[float, int, float, float]] = []
    stop = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        last_print = 0.0
        while not stop.is_set():
            with stack.rt.session() as s:
                counts = dict(s.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY status")).all())
            running = sum(counts.get(k, 0) for k in ("submitting", "running", "finalizing"))
            used = redis_mb(client)
            now = time.monotonic() - start
            samples.append((now, int(running), stack.mem_mb("worker"), used))
            if now - last_print >= 10:
                last_print = now
                print(f"  t={now:5.0f}s {counts} worker={samples[-1][2]:.0f}MiB redis={used:.1f}MiB", flush=True)
            stop.wait(2)

    try:
        naive = countdown_baseline(stack, args.jobs, args.concurrency)
        start = time.monotonic()
        idle = (stack.mem_mb("worker"), redis_mb(client))
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
    print(f"idle worker PSS {idle[0]:.0f} MiB, idle redis {idle[1]:.1f} MiB (baseline)")
    print(f"{'in flight':>10} {'worker PSS MiB':>15} {'vs idle':>8} {'redis MiB':>10} {'redis now':>10}")
    for milestone in (100, 1000, 2500, 5000, 7500, 10_000):
        reached = [s for s in samples if s[1] >= milestone]
        if not reached:
            continue
        # Peaks up to the moment the in-flight count first reached the milestone; "now" is Redis at that
        # moment (the early peak is the batch's own queued submit messages, not the in-flight jobs).
        peak_rss = max(s[2] for s in samples if s[0] <= reached[0][0])
        peak_redis = max(s[3] for s in samples if s[0] <= reached[0][0])
        print(f"{milestone:>10} {peak_rss:15.0f} {peak_rss / idle[0]:8.2f} {peak_redis:10.1f} {reached[0][3]:10.1f}")
    print(
        f"{'peak':>10} {max(s[2] for s in samples):15.0f} {max(s[2] for s in samples) / idle[0]:8.2f} "
        f"{max(s[3] for s in samples):10.1f}   (max in flight {max(s[1] for s in samples)})"
    )
    print(
        f"baseline, one countdown message per in-flight job ({args.jobs} held by a bare Celery worker, "
        f"default worker_eta_task_limit): worker {naive[0]:.0f} -> {naive[2]:.0f} MiB "
        f"({naive[2] / naive[0]:.2f}x idle), redis {naive[1]:.1f} -> {naive[3]:.1f} MiB"
    )


if __name__ == "__main__":
    main()
