"""Priority: a big batch already queued does not hold back an interactive job."""

from __future__ import annotations

import time

import pytest

from imagegen.producer import create_batch, publish_submits
from imagegen.request import ImageRequest
from tests.support.stack import StackFactory

pytestmark = pytest.mark.pipeline


def test_interactive_job_overtakes_a_queued_batch(private_stack: StackFactory) -> None:
    stack, _, _ = private_stack(SIM_DURATION_S="5")
    _, jobs = create_batch(
        stack.rt, [ImageRequest(prompt=stack.prompt(f"bulk {i}"), priority="batch") for i in range(2000)]
    )
    publish_submits(stack.publisher, jobs)  # 2,000 submit messages now wait on the batch queue
    time.sleep(1)
    started = time.monotonic()
    job_id = stack.submit(stack.prompt("urgent"), priority="interactive")
    job = stack.wait(job_id, statuses={"running", "succeeded"}, timeout=30)
    waited = time.monotonic() - started
    with stack.rt.session() as s:
        from sqlalchemy import text

        still_queued = s.execute(text("SELECT count(*) FROM jobs WHERE status = 'queued'")).scalar_one()
    print(f"\n[priority] interactive submitted after {waited:.2f}s with {still_queued} batch jobs still queued")
    assert job.status in ("running", "succeeded")
    assert still_queued > 1000, "the batch should still be mostly waiting"
    assert waited < 3.0
