"""Recovery per queue, the reconciler's own queue, and paused keys with a fallback, with real processes.

One private stack (its own Redis, database, simulator, worker and beat) serves the three scenarios in
order; figures are printed (``-s`` to see them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from imagegen import devstack
from imagegen.producer import create_batch, create_job, publish_submits
from imagegen.request import ImageRequest
from imagegen.store import repo
from imagegen.store.models import Job
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.pipeline

GRACE_S = 2.0
QUEUE_ENV = {"IMAGEGEN_DISPATCH_GRACE_S": str(GRACE_S), "IMAGEGEN_RECONCILE_INTERVAL_S": "1"}
#: Every queue but ``batch``: batch messages pile up unconsumed, a deep queue that never drains.
NOT_BATCH = "celery,interactive,poll,openai,reconcile,notify"


@pytest.fixture(scope="module")
def queue_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_proc, redis_url = devstack.start_redis()
    stack = start_stack(redis_url, database_factory(), tmp_path_factory, **QUEUE_ENV)
    assert stack.worker is not None
    stack.worker.stop()
    stack.processes.remove(stack.worker)
    stack.worker = devstack.start_worker(stack.env, concurrency=2, queues=NOT_BATCH, log_dir=stack.log_dir)
    stack.processes.append(stack.worker)
    # The documented deployment: a small worker of its own for the reconciler.
    stack.processes.append(
        devstack.start_worker(stack.env, concurrency=1, queues="reconcile", name="reconciler", log_dir=stack.log_dir)
    )
    probe = stack.submit(stack.prompt("warm-up again [[instant]]"))
    stack.wait(probe, timeout=60)
    yield stack
    stack.close()
    redis_proc.stop()


def _unpublished(stack: Stack, prompt: str, **fields: Any) -> str:
    """A job whose submit message was lost: the row says one is in flight, the broker has none."""
    job, created = create_job(stack.rt, ImageRequest.from_dict({"prompt": prompt, **fields}, allow_private_urls=True))
    assert created
    # The message is believed in flight for one grace, as the stack's producers configure it.
    _in_flight(stack, [job.id])
    return job.id


def _in_flight(stack: Stack, ids: list[str]) -> None:
    with stack.rt.session() as s:
        due = stack.rt.now() + timedelta(seconds=GRACE_S)
        s.execute(sa.update(Job).where(col(Job.id).in_(ids)).values(dispatch_until=due))


def test_a_lost_interactive_submit_behind_a_deep_batch_queue_is_recovered(queue_stack: Stack) -> None:
    stack = queue_stack
    _, jobs = create_batch(
        stack.rt, [ImageRequest(prompt=stack.prompt(f"deep {i}"), priority="batch") for i in range(600)]
    )
    _in_flight(stack, [j.id for j in jobs])
    publish_submits(stack.publisher, jobs)  # 600 batch messages wait: over the old summed threshold of 500
    assert stack.rt.redis.llen("batch") >= 600
    started = time.monotonic()
    job_id = _unpublished(stack, stack.prompt("lost interactive [[instant]]"), deadline_s=30)
    job = stack.wait(job_id, timeout=40)
    took = time.monotonic() - started
    print(f"\n[per-queue recovery] lost interactive submit ended {job.status} after {took:.1f}s (grace {GRACE_S}s)")
    assert job.status == "succeeded", "the lost interactive submit was not recovered while the batch queue was deep"
    assert took < 6 * GRACE_S + 5
    # A batch message presumed lost for several grace periods is re-sent even though its queue is deep.
    stuck = _unpublished(stack, stack.prompt("lost batch"), priority="batch")
    deadline = time.monotonic() + 8 * GRACE_S + 10
    sent_at = stack.job(stuck).dispatch_until
    while stack.job(stuck).dispatch_until == sent_at and time.monotonic() < deadline:
        time.sleep(0.3)
    assert stack.job(stuck).dispatch_until != sent_at, "a long-lost batch submit was never re-sent"
    with stack.rt.session() as s:  # leave nothing for the next scenarios to trip over
        s.execute(sa.update(Job).where(col(Job.priority) == "batch").values(status="canceled", dispatch_until=None))


def _attempts(stack: Stack, job_id: str) -> list[Any]:
    with stack.rt.session() as s:
        return list(repo.list_attempts(s, job_id))


class SlowReceiver:
    """A caller endpoint that sleeps ``delay`` seconds before answering each notification."""

    def __init__(self, delay: float) -> None:
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.calls += 1
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(delay)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_reconciler_runs_while_a_slow_receiver_holds_the_notifications(queue_stack: Stack) -> None:
    stack = queue_stack
    receiver = SlowReceiver(delay=25)
    ids = [stack.submit(stack.prompt(f"notify slow {i} [[instant]]"), callback_url=receiver.url) for i in range(4)]
    for job_id in ids:
        # Generous: once two jobs have ended, their notifications hold both of the worker's processes
        # (that is the point), so the other jobs' polls wait for the receiver too.
        stack.wait(job_id, timeout=90)
    deadline = time.monotonic() + 15
    while receiver.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert receiver.calls >= 2, "the notifications never reached the slow receiver"
    # Both processes of the main worker now wait on the receiver. A parked due job is reconciler work.
    job_id = _unpublished(stack, stack.prompt("parked while notifying [[instant]]"))
    with stack.rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job_id).values(dispatch_until=None))
    started = time.monotonic()
    while stack.job(job_id).dispatch_until is None and time.monotonic() - started < 20:
        time.sleep(0.2)
    took = time.monotonic() - started
    print(f"\n[reconcile queue] parked job released {took:.1f}s after the receiver jammed the notify tasks")
    assert stack.job(job_id).dispatch_until is not None and took < 8, "the reconciler was starved"
    receiver.server.shutdown()


def test_a_parked_job_on_a_paused_key_moves_to_its_fallback(queue_stack: Stack) -> None:
    stack = queue_stack
    with stack.rt.session() as s:
        repo.pause_provider(s, provider="apidot", reason="insufficient_credits", message="402 from a test")
    try:
        job_id = _unpublished(stack, stack.prompt("paused with fallback [[instant]]"), fallback=["image2"])
        no_hop = _unpublished(stack, stack.prompt("paused without fallback [[instant]]"))
        with stack.rt.session() as s:  # parked: no message in flight, as jobs on a paused key are
            s.execute(sa.update(Job).where(col(Job.id).in_([job_id, no_hop])).values(dispatch_until=None))
        # Submitted to image2 is the move (its polls may still wait behind the previous test's receiver).
        job = stack.wait(job_id, timeout=40, statuses={"running", "succeeded", "failed", "held"})
        print(f"\n[paused fallback] parked job is {job.status} on {job.provider}")
        assert job.status in ("running", "succeeded") and job.provider == "image2"
        assert [a.kind for a in _attempts(stack, job_id)][:1] == ["fallback"]
        assert stack.job(no_hop).status == "queued" and stack.job(no_hop).provider == "apidot"
    finally:
        stack.resume("apidot")
