"""Submits whose answer is lost after the upstream created the task (a possible second payment), through
the whole pipeline under the default ``at_least_once`` policy; upstream tasks counted at the simulator."""

from __future__ import annotations

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline


def created(stack: Stack, prompt: str) -> int:
    """Upstream tasks the simulator created for this prompt (a task id in a submit record)."""
    return sum(1 for r in stack.records(prompt, "submit") if r["task_id"])


def keys(stack: Stack, prompt: str) -> list[str | None]:
    return [r.get("idempotency_key") for r in stack.records(prompt, "submit")]


def test_stalled_submit_is_posted_again_at_most_once(stack: Stack) -> None:
    # Every POST creates a task, then answers after our 2 s submit read timeout.
    prompt = stack.prompt("stalls after creating [[submitstall:4]]")
    job_id = stack.submit(prompt)
    job = stack.wait(job_id, timeout=90)
    assert (job.status, job.error_kind) == ("failed", "submit_outcome_unknown")
    assert created(stack, prompt) == 2  # 1 + IMAGEGEN_MAX_SUBMITS_UNKNOWN
    assert (job.unknown_submits, job.unavailable_submits, job.submit_attempts) == (2, 0, 2)
    assert keys(stack, prompt) == [job_id, job_id]


def test_stall_once_then_the_resubmit_succeeds(stack: Stack) -> None:
    prompt = stack.prompt("stalls once [[submitstallx1:4]] [[instant]]")
    job_id = stack.submit(prompt)
    job = stack.wait(job_id, timeout=60)
    assert job.status == "succeeded"
    assert (created(stack, prompt), job.unknown_submits, job.last_error_kind) == (2, 1, "submit_outcome_unknown")
    assert keys(stack, prompt) == [job_id, job_id], "the resubmit carries the same Idempotency-Key"


@pytest.mark.parametrize("fault", ["submitdrop", "submitlost:502", "submitlost:504", "submitlost:noid"])
def test_answer_lost_after_creation_is_outcome_unknown(stack: Stack, fault: str) -> None:
    prompt = stack.prompt(f"answer lost [[{fault}]]")
    job = stack.wait(stack.submit(prompt), timeout=60)
    assert (job.status, job.error_kind) == ("failed", "submit_outcome_unknown")
    assert created(stack, prompt) == 2
    assert job.unavailable_submits == 0


def test_plain_503_is_an_answer_and_spends_the_unavailable_budget(stack: Stack) -> None:
    prompt = stack.prompt("overloaded [[503x3]] [[instant]]")
    job = stack.wait(stack.submit(prompt), timeout=60)
    assert job.status == "succeeded"
    assert (stack.submits(prompt), job.unavailable_submits, job.unknown_submits) == (4, 3, 0)
