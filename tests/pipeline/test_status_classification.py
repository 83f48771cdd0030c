"""Upstream answers whose meaning is easy to get wrong, through the whole pipeline: a status 404 for a
task we created, APIDot's other terminal labels, and a retryable 409 on submit."""

from __future__ import annotations

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline


def test_status_404_once_spends_a_poll_error_not_the_paid_job(stack: Stack) -> None:
    prompt = stack.prompt("status not found once [[poll404x1]] [[instant]]")
    job = stack.wait(stack.submit(prompt), timeout=30)
    assert job.status == "succeeded", (job.error_kind, job.error_message)
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 2)
    assert job.last_error_http_status == 404


@pytest.mark.parametrize("label", ["success", "succeeded", "completed"])
def test_other_success_labels_finish_the_job(stack: Stack, label: str) -> None:
    prompt = stack.prompt(f"done in other words [[label:{label}]] [[instant]]")
    job = stack.wait(stack.submit(prompt, deadline_s=15), timeout=30)
    assert (job.status, job.upstream_status) == ("succeeded", label)
    assert job.result and job.result[0]["path"]


@pytest.mark.parametrize("label", ["error", "canceled", "cancelled"])
def test_other_failure_labels_are_generation_failed(stack: Stack, label: str) -> None:
    prompt = stack.prompt(f"ended badly [[statusfail]] [[label:{label}]] [[instant]]")
    job = stack.wait(stack.submit(prompt, deadline_s=15), timeout=30)
    assert (job.status, job.error_kind, job.upstream_status) == ("failed", "generation_failed", label)
    assert stack.submits(prompt) == 1


def test_submit_409_is_retried(stack: Stack) -> None:
    prompt = stack.prompt("conflict once [[409x1]] [[instant]]")
    job = stack.wait(stack.submit(prompt), timeout=30)
    assert job.status == "succeeded", (job.error_kind, job.error_message)
    assert stack.submits(prompt) == 2
