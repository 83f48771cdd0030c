"""Throughput: N jobs through the whole pipeline (simulator answers at once), against two baselines on the
same Redis, DB and worker settings, in the same run:
- bare Celery moving the same number of messages (2 per job) with one DB write each (the target to match);
- the naive hand-written loop: the same messages and writes plus our three upstream calls per job (submit,
  status, download), with none of our safety (what "the cost of correctness" is measured against).
Worker CPU per job is reported too: unlike jobs/s it does not depend on what else the two cores run.

    python -m bench.throughput [--jobs 300] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import col

from bench.stack import BenchStack, group_cpu_s
from imagegen.producer import build_job
from imagegen.request import ImageRequest
from imagegen.store.models import Job

ENV = {
    "SIM_DURATION_S": "0",
    "IMAGEGEN_EXPECTED_DURATION_S": "0",
    "IMAGEGEN_POLL_MIN_S": "0.1",
    "IMAGEGEN_RECONCILE_INTERVAL_S": "2",
}


class Run(NamedTuple):
    """One run's figures."""

    jobs_per_s: float
    worker_cpu_ms: float  #: CPU of the worker processes per job
    other_cpu_ms: float  #: CPU of the simulator (the fake upstream) per job


def pipeline(stack: BenchStack, jobs: int) -> Run:
    """The real pipeline (submit, poll, download, store, succeed)."""
    tag = uuid.uuid4().hex[:8]
    prompts = [f"throughput {tag} {i}" for i in range(jobs)]
    cpu, sim = stack.cpu_s("worker"), stack.cpu_s("simulator")
    start = time.monotonic()
    ids = stack.submit(prompts, priority="batch")
    done = stack.wait(ids, timeout=600)
    elapsed = time.monotonic() - start
    assert all(j.status == "succeeded" for j in done), "pipeline jobs failed"
    return Run(
        jobs / elapsed,
        1000 * (stack.cpu_s("worker") - cpu) / jobs,
        1000 * (stack.cpu_s("simulator") - sim) / jobs,
    )


def baseline(
    stack: BenchStack,
    jobs: int,
    concurrency: int,
    on_ready: Callable[[], None] | None = None,
    *,
    naive: bool = False,
) -> Run:
    """Bare Celery: 2 messages per job, one UPDATE each; with ``naive``, the hand-written loop that also
    makes our three upstream calls (``bench.baseline_app``). ``on_ready`` runs once the worker is up, just
    before the first message (e.g. to snapshot Redis counters)."""
    now = stack.rt.now()
    rows = [build_job(stack.rt, ImageRequest(prompt=f"baseline {i}"), now=now) for i in range(jobs)]
    with stack.rt.session() as s:
        s.add_all(rows)
    ids = [r.id for r in rows]
    proc = stack.start_bare_worker("baseline", queues="batch,poll", concurrency=concurrency)
    try:
        producer = stack.bare_producer()
        time.sleep(3)  # worker ready
        if on_ready is not None:
            on_ready()
        cpu = group_cpu_s({proc.pid})
        start = time.monotonic()
        sim = stack.cpu_s("simulator")
        for job_id in ids:
            if naive:
                producer.send_task("bench.naive_submit", args=[job_id], queue="batch")
            else:
                producer.send_task("bench.touch", args=[job_id, 0], queue="batch")
        _wait_polls(stack, ids, timeout=600)
        elapsed = time.monotonic() - start
        return Run(
            jobs / elapsed,
            1000 * (group_cpu_s({proc.pid}) - cpu) / jobs,
            1000 * (stack.cpu_s("simulator") - sim) / jobs,
        )
    finally:
        proc.stop()


def _wait_polls(stack: BenchStack, ids: list[str], timeout: float) -> None:
    """Until every baseline row got both of its UPDATEs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with stack.rt.session() as s:
            done = s.execute(sa.select(sa.func.count()).where(col(Job.id).in_(ids), col(Job.polls) >= 2)).scalar_one()
        if done >= len(ids):
            return
        time.sleep(0.2)
    raise TimeoutError("baseline did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    stack = BenchStack(ENV, concurrency=args.concurrency)
    try:
        ours = pipeline(stack, args.jobs)
        # Stop our worker so the baseline has the machine to itself, as ours did.
        for proc in stack.procs:
            if proc.name.startswith("worker"):
                proc.stop()
        bare = baseline(stack, args.jobs, args.concurrency)
        naive = baseline(stack, args.jobs, args.concurrency, naive=True)
    finally:
        stack.close()
    print(f"jobs={args.jobs} concurrency={args.concurrency}")
    print(f"{'':12} {'jobs/s':>8} {'worker CPU ms/job':>18} {'simulator CPU ms/job':>21}")
    for name, run in (("pipeline", ours), ("bare celery", bare), ("naive loop", naive)):
        print(f"{name:12} {run.jobs_per_s:8.1f} {run.worker_cpu_ms:18.1f} {run.other_cpu_ms:21.1f}")
    print("bare celery: 2 messages + 2 UPDATEs per job; naive loop: the same + our 3 upstream calls, no safety")
    for name, base in (("bare celery", bare), ("naive loop", naive)):
        print(
            f"ours / {name:12} jobs/s {ours.jobs_per_s / base.jobs_per_s:5.2f}   "
            f"worker CPU {base.worker_cpu_ms / ours.worker_cpu_ms:5.2f} (its CPU per job / ours)"
        )


if __name__ == "__main__":
    main()
