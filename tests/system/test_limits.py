"""Limits that hold across real processes: the in-flight cap parks jobs in the database (no re-publish
loop) and never lets more than the cap run; interactive work overtakes a rate-limited batch."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import redis
import sqlalchemy as sa

from imagegen.producer import create_batch, publish_submits
from imagegen.request import ImageRequest
from tests.support.stack import Stack, StackFactory

pytestmark = pytest.mark.pipeline

IN_FLIGHT = ("submitting", "running", "finalizing")


def submit_tasks_received(stack: Stack) -> int:
    """``imagegen.submit`` messages the worker has received so far (its INFO log line per task)."""
    text = (stack.log_dir / "worker.log").read_text(errors="replace")
    return sum(1 for line in text.splitlines() if "imagegen.submit[" in line and "received" in line)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = now = 0
    for _, delta in events:
        now += delta
        best = max(best, now)
    return best


def test_in_flight_cap_parks_jobs_instead_of_republishing(private_stack: StackFactory) -> None:
    limits = {"apidot": {"max_in_flight": 2}}
    stack, _, _ = private_stack(IMAGEGEN_PROVIDER_LIMITS=json.dumps(limits), SIM_DURATION_S="1.5")
    before = submit_tasks_received(stack)
    tag = stack.prompt("capped")
    _, jobs = create_batch(stack.rt, [ImageRequest(prompt=f"{tag} {i}", priority="batch") for i in range(20)])
    ids = [j.id for j in jobs]
    peak = phantom = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, phantom
        while not stop.is_set():
            with stack.rt.session() as s:
                busy = s.execute(
                    sa.text(f"SELECT count(*) FROM jobs WHERE status IN {IN_FLIGHT!r} AND provider = 'apidot'")
                ).scalar_one()
                # No rate is configured, so no job can hold a rate slot.
                reserved = s.execute(sa.text("SELECT count(*) FROM jobs WHERE rate_reserved")).scalar_one()
            peak = max(peak, int(busy))
            phantom = max(phantom, int(reserved))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    publish_submits(stack.publisher, jobs)
    try:
        done = [stack.wait(job_id, timeout=120) for job_id in ids]
    finally:
        stop.set()
        sampler.join()
    tasks = submit_tasks_received(stack) - before
    sim_tasks = [t for t in httpx.get(f"{stack.sim_url}/_sim/tasks", timeout=10).json() if tag in str(t)]
    overlap = max_overlap([(t["created_at"], t["finish_at"]) for t in sim_tasks]) if sim_tasks else -1
    print(f"\n[cap] 20 jobs, cap 2: {tasks} submit tasks, peak {peak} in flight (db), upstream overlap {overlap}")
    print(f"[cap] at most {phantom} jobs marked as holding a rate slot at once")
    assert [j.status for j in done] == ["succeeded"] * 20, [j.status for j in done]
    assert stack.submits(tag) == 20  # one upstream submit each, none lost or doubled
    assert peak <= 2
    assert overlap <= 2
    assert phantom == 0, "a job waiting for the cap must not be marked as holding a rate slot"
    # Each job: its first message, at most one release after it parked, and slack for races.
    assert tasks <= 20 * 3, f"{tasks} submit tasks for 20 jobs: a re-publish loop"


def test_interactive_job_overtakes_a_rate_limited_batch(private_stack: StackFactory) -> None:
    limits = {"apidot": {"rate_per_s": 5, "burst": 1}}
    stack, _, _ = private_stack(IMAGEGEN_PROVIDER_LIMITS=json.dumps(limits), SIM_DURATION_S="1")
    tag = stack.prompt("bulk")
    _, jobs = create_batch(stack.rt, [ImageRequest(prompt=f"{tag} {i}", priority="batch") for i in range(150)])
    publish_submits(stack.publisher, jobs)
    # Until every batch message has been taken by the worker (each job reserved a slot or got its time).
    broker = redis.Redis.from_url(stack.env["REDIS_URL"])
    deadline = time.monotonic() + 60
    while broker.llen("batch") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    started = time.monotonic()
    job_id = stack.submit(stack.prompt("urgent"), priority="interactive")
    stack.wait(job_id, statuses={"running", "succeeded", "failed"}, timeout=90)
    waited = time.monotonic() - started
    with stack.rt.session() as s:
        queued = s.execute(sa.text("SELECT count(*) FROM jobs WHERE status = 'queued'")).scalar_one()
    print(f"\n[rate priority] interactive submitted after {waited:.2f}s with {queued} batch jobs still queued")
    assert stack.job(job_id).status in ("running", "succeeded")
    assert queued > 50, "the batch should still be mostly waiting"
    assert waited < 6.0
