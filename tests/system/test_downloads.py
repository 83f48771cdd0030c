"""Download budgets through a real worker with short limits: a too-slow file ends cleanly, a fast one is kept."""

from __future__ import annotations

import pytest

from tests.support.stack import StackFactory

pytestmark = pytest.mark.pipeline


def test_too_slow_download_ends_result_unavailable_within_its_budget(private_stack: StackFactory) -> None:
    stack, _, _ = private_stack(IMAGEGEN_DOWNLOAD_MAX_S="2", IMAGEGEN_MAX_DOWNLOAD_ATTEMPTS="3")
    slow, quick = (
        stack.prompt("crawling cdn [[slowfile:8]] [[instant]]"),
        stack.prompt("quick [[slowfile:0.5]] [[instant]]"),
    )
    slow_id, quick_id = stack.submit(slow, deadline_s=120), stack.submit(quick, deadline_s=120)
    job = stack.wait(slow_id, timeout=60)
    assert (job.status, job.error_kind) == ("failed", "result_unavailable"), job.error_message
    assert "too slow" in (job.error_message or "") and job.download_errors == 3
    assert (stack.polls(slow), len(stack.records(slow, "file"))) == (1, 3), "bounded: 3 downloads, 1 status call"
    fast = stack.wait(quick_id, timeout=30)
    assert fast.status == "succeeded", fast.error_message
    assert len(stack.records(quick, "file")) == 1
