"""One test per upstream failure and the error kind it ends in, through the pipeline, with exact upstream counts."""

from __future__ import annotations

import pytest

from imagegen.store.models import Job
from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline


def _error(job: Job) -> str | None:
    return job.error_kind


def test_invalid_request_fails_at_once(stack: Stack) -> None:
    prompt = stack.prompt("bad upstream request [[400]]")
    job = stack.wait(stack.submit(prompt))
    assert (job.status, _error(job), job.error_http_status) == ("failed", "invalid_request", 400)
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 0)


def test_invalid_request_in_detail_form(stack: Stack) -> None:
    prompt = stack.prompt("detail body [[400]] [[detail]]")
    job = stack.wait(stack.submit(prompt))
    assert (job.status, _error(job)) == ("failed", "invalid_request")
    assert stack.submits(prompt) == 1


def test_moderation_on_submit_is_content_rejected(stack: Stack) -> None:
    prompt = stack.prompt("blocked [[moderation]]")
    job = stack.wait(stack.submit(prompt))
    assert (job.status, _error(job)) == ("failed", "content_rejected")
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 0)


def test_safety_failure_of_the_task_is_content_rejected(stack: Stack) -> None:
    prompt = stack.prompt("rendered then blocked [[safetyfail]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert (job.status, _error(job)) == ("failed", "content_rejected")
    assert "safety" in (job.error_message or "")
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 1)


def test_generation_failed_keeps_upstream_message(stack: Stack) -> None:
    prompt = stack.prompt("fails upstream [[statusfail]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert (job.status, _error(job)) == ("failed", "generation_failed")
    assert job.error_message == "Generation failed: upstream model error"
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 1)


def test_rate_limited_retries_then_succeeds(stack: Stack) -> None:
    prompt = stack.prompt("two 429s [[429x2:noheader]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert job.status == "succeeded"
    assert job.submit_attempts == 3 and job.last_error_kind == "rate_limited"
    assert (stack.submits(prompt), stack.polls(prompt)) == (3, 1)


def test_rate_limited_budget_is_ten_submit_calls(stack: Stack) -> None:
    prompt = stack.prompt("always 429 [[429:noheader]]")
    job = stack.wait(stack.submit(prompt), timeout=60)
    assert (job.status, _error(job), job.error_http_status) == ("failed", "rate_limited", 429)
    assert job.submit_attempts == 10
    assert (stack.submits(prompt), stack.polls(prompt)) == (10, 0)


def test_upstream_unavailable_budget_is_six_submit_calls(stack: Stack) -> None:
    prompt = stack.prompt("always 500 [[500]]")
    job = stack.wait(stack.submit(prompt), timeout=60)
    assert (job.status, _error(job)) == ("failed", "upstream_unavailable")
    assert (stack.submits(prompt), stack.polls(prompt)) == (6, 0)


def test_five_5xx_then_success_uses_the_sixth_call(stack: Stack) -> None:
    # 500 and 503 are answers; a 502/504 may hide a created task (test_submit_outcomes.py).
    prompt = stack.prompt("five 5xx [[500x2]] [[503x3]] [[instant]]")
    job = stack.wait(stack.submit(prompt), timeout=60)
    assert job.status == "succeeded"
    assert (stack.submits(prompt), stack.polls(prompt)) == (6, 1)


def test_error_code_inside_http_200_is_retried(stack: Stack) -> None:
    prompt = stack.prompt("code 500 in a 200 [[code500x1]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert job.status == "succeeded"
    assert (stack.submits(prompt), stack.polls(prompt)) == (2, 1)


def test_malformed_submit_answer_is_retried(stack: Stack) -> None:
    prompt = stack.prompt("html instead of json [[malformedx1]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert job.status == "succeeded"
    assert (stack.submits(prompt), stack.polls(prompt)) == (2, 1)


def test_read_timeout_is_outcome_unknown_and_posted_again_once(stack: Stack) -> None:
    # The upstream accepted the first POST but answered after our submit read timeout (2 s): a real
    # double-submit window that at_least_once accepts once (IMAGEGEN_MAX_SUBMITS_UNKNOWN); the record
    # shows both calls.
    prompt = stack.prompt("slow answer [[hangx1:3]] [[instant]]")
    job = stack.wait(stack.submit(prompt), timeout=60)
    assert job.status == "succeeded"
    assert (job.submit_attempts, job.unknown_submits, job.unavailable_submits) == (2, 1, 0)
    assert stack.submits(prompt) == 2


def test_poll_errors_never_resubmit_and_recover(stack: Stack) -> None:
    prompt = stack.prompt("flaky status [[poll500x3]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert job.status == "succeeded"
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 4)
    assert job.polls == 4


def test_poll_error_budget_fails_on_tenth_call(stack: Stack) -> None:
    prompt = stack.prompt("status always 502 [[poll502]] [[instant]]")
    job = stack.wait(stack.submit(prompt), timeout=60)
    assert (job.status, _error(job)) == ("failed", "upstream_unavailable")
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 10)


def test_poll_429_counts_as_poll_error_not_submit(stack: Stack) -> None:
    prompt = stack.prompt("status 429 [[poll429x2:noheader]] [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert job.status == "succeeded"
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 3)


def test_auth_failed_holds_job_and_pauses_provider(stack: Stack, resume_after: None) -> None:
    prompt = stack.prompt("bad key [[401x1]] [[instant]]")
    job_id = stack.submit(prompt)
    job = stack.wait(job_id)
    assert (job.status, _error(job), job.error_http_status) == ("held", "auth_failed", 401)
    assert stack.submits(prompt) == 1
    stack.resume()
    job = stack.wait(job_id, statuses={"succeeded", "failed"})
    assert job.status == "succeeded"
    assert stack.submits(prompt) == 2


def test_forbidden_is_auth_failed(stack: Stack, resume_after: None) -> None:
    prompt = stack.prompt("forbidden [[403]]")
    job = stack.wait(stack.submit(prompt))
    assert (job.status, _error(job)) == ("held", "auth_failed")
    assert stack.submits(prompt) == 1


def test_insufficient_credits_holds_and_resume_releases(stack: Stack, resume_after: None) -> None:
    prompt = stack.prompt("no credits [[402x1]] [[instant]]")
    job_id = stack.submit(prompt)
    job = stack.wait(job_id)
    assert (job.status, _error(job), job.error_http_status) == ("held", "insufficient_credits", 402)
    stack.resume()
    job = stack.wait(job_id, statuses={"succeeded", "failed"})
    assert job.status == "succeeded"
    assert (stack.submits(prompt), stack.polls(prompt)) == (2, 1)


def test_deadline_exceeded_while_running(stack: Stack) -> None:
    prompt = stack.prompt("never finishes [[never]]")
    job = stack.wait(stack.submit(prompt, deadline_s=2), timeout=30)
    assert (job.status, _error(job)) == ("expired", "deadline_exceeded")
    assert stack.submits(prompt) == 1
    polls = stack.polls(prompt)
    assert polls >= 1
    import time

    time.sleep(2)
    assert stack.polls(prompt) == polls, "an expired job must not be polled again"


def test_canceled_job_stops_polling(stack: Stack) -> None:
    from imagegen.ops import actions as admin

    prompt = stack.prompt("cancel me [[never]]")
    job_id = stack.submit(prompt)
    stack.wait(job_id, statuses={"running"})
    assert admin.cancel(stack.rt, job_id).ok
    job = stack.job(job_id)
    assert (job.status, _error(job)) == ("canceled", "canceled")
    import time

    time.sleep(1.5)
    polls = stack.polls(prompt)
    time.sleep(2)
    assert stack.polls(prompt) == polls
    assert stack.submits(prompt) == 1
    assert not admin.cancel(stack.rt, job_id).ok
