"""Results that were paid for: downloads that fail for good or for now, slow files, odd content types.

Every figure is read from the simulator's request record: a finished task needs one status call, and
each download attempt is one file GET, whatever happens to the download.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imagegen.jobs.poll import poll_job
from imagegen.jobs.submit import submit_job
from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.store.models import Job
from tests.support.stack import SETTLED, Stack

pytestmark = pytest.mark.pipeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: IMAGEGEN_MAX_DOWNLOAD_ATTEMPTS's default (the pipeline does not set it).
DEFAULT_DOWNLOAD_ATTEMPTS = 8


def _settle(stack: Stack, job_id: str, window: float) -> Job:
    """The job once settled, or as it is after ``window`` seconds (so a test can report a loop's cost)."""
    deadline = time.monotonic() + window
    while True:
        job = stack.job(job_id)
        if job.status in SETTLED or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def _calls(stack: Stack, prompt: str) -> tuple[int, int]:
    """(status calls, file GETs) the upstream saw for this prompt."""
    return stack.polls(prompt), len(stack.records(prompt, "file"))


# --- item: a result URL that fails for good, or for a while ------------------------------------------


def test_result_404_fails_result_unavailable_after_three_downloads(stack: Stack) -> None:
    prompt = stack.prompt("gone file [[file404]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, deadline_s=60), window=15)
    assert _calls(stack, prompt) == (1, 3), "one status call, then only downloads (3 definite failures)"
    assert (job.status, job.error_kind, job.error_http_status) == ("failed", "result_unavailable", 404)
    assert job.submit_attempts == 1, "never resubmitted"
    # The finished file URL is kept (path null): the caller can see what could not be fetched.
    assert [entry["path"] for entry in job.result or []] == [None]
    assert (job.result or [{}])[0]["url"].endswith(".png")


@pytest.mark.parametrize("code", [403, 410])
def test_other_gone_statuses_are_definite(stack: Stack, code: int) -> None:
    prompt = stack.prompt(f"gone file [[file{code}]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, deadline_s=60), window=15)
    assert _calls(stack, prompt) == (1, 3)
    assert (job.status, job.error_kind, job.error_http_status) == ("failed", "result_unavailable", code)


def test_a_404_that_heals_is_retried_without_a_status_call(stack: Stack) -> None:
    # Storage behind a CDN can answer 404 for a moment after the task says finished.
    prompt = stack.prompt("late file [[file404x1]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, deadline_s=60), window=15)
    assert job.status == "succeeded", job.error_message
    assert _calls(stack, prompt) == (1, 2)


def test_transient_download_errors_retry_the_download_only(stack: Stack) -> None:
    prompt = stack.prompt("flaky file [[file503x2]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, deadline_s=60), window=15)
    assert job.status == "succeeded", job.error_message
    assert _calls(stack, prompt) == (1, 3), "two 503s retried as downloads, no status call in between"
    assert job.download_errors == 2 and job.last_error_kind == "upstream_unavailable"
    assert Path((job.result or [{}])[0]["path"]).read_bytes().startswith(PNG_SIGNATURE)


def test_transient_budget_ends_result_unavailable(stack: Stack) -> None:
    prompt = stack.prompt("broken file [[file503]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, deadline_s=60), window=30)
    max_attempts = DEFAULT_DOWNLOAD_ATTEMPTS
    assert _calls(stack, prompt) == (1, max_attempts), "a bounded loop: one GET per attempt, one status call"
    assert (job.status, job.error_kind, job.error_http_status) == ("failed", "result_unavailable", 503)
    assert job.download_errors == max_attempts


# --- item: content types ---------------------------------------------------------------------------


@pytest.mark.parametrize("directive", ["fileoctet", "filebinary", "filenotype"])
def test_untyped_image_is_stored_with_the_sniffed_type(stack: Stack, directive: str) -> None:
    prompt = stack.prompt(f"s3 style [[{directive}]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, deadline_s=60), window=15)
    assert (job.status, job.error_kind) == ("succeeded", None), job.error_message
    (entry,) = job.result or []
    assert entry["content_type"] == "image/png" and entry["path"].endswith(".png")
    with Image.open(entry["path"]) as image:
        assert image.size == (entry["width"], entry["height"]) == (64, 64)
    assert _calls(stack, prompt) == (1, 1)


@pytest.mark.parametrize("directive", ["filehtml", "filejunk"])
def test_not_an_image_is_result_unavailable(stack: Stack, directive: str) -> None:
    prompt = stack.prompt(f"not an image [[{directive}]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, deadline_s=60), window=15)
    assert (job.status, job.error_kind) == ("failed", "result_unavailable"), job.error_message
    assert _calls(stack, prompt) == (1, 3)
    assert [entry["path"] for entry in job.result or []] == [None], "nothing that is not an image is stored"


def test_synchronous_provider_answer_that_is_not_an_image(stack: Stack) -> None:
    prompt = stack.prompt("openai junk [[filejunk]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, provider="openai"), window=15)
    assert (job.status, job.error_kind) == ("failed", "result_unavailable"), job.error_message
    assert stack.submits(prompt) == 1


# --- item: downloads get time limits that fit the fetch policy ---------------------------------------


def test_slow_download_within_the_fetch_policy_succeeds(stack: Stack) -> None:
    # 33 s is inside the fetch policy's 120 s but beyond the 30 s soft limit of a poll message.
    prompt = stack.prompt("slow cdn [[slowfile:33]] [[instant]]")
    job = _settle(stack, stack.submit(prompt, deadline_s=75), window=90)
    assert job.status == "succeeded", (job.status, job.error_kind, job.error_message)
    assert _calls(stack, prompt) == (1, 1)


def test_soft_time_limit_hands_the_download_back(stack: Stack) -> None:
    """A finalize message that runs into its soft time limit returns the job to the download retry path
    (counted, no status call) and the next attempt, with the normal limits, stores the file."""
    prompt = stack.prompt("soft limit [[slowfile:4]] [[instant]]")
    request = ImageRequest.from_dict({"prompt": prompt}, allow_private_urls=True)
    job, _ = create_job(stack.rt, request)
    submit_job(stack.rt, job.id)  # in-process; its poll message is not published
    time.sleep(1.0)  # the task is [[instant]]: finished by now
    # Forced (as a webhook would): the first poll's due time follows the durations learned from earlier
    # tests' jobs, so an unforced poll may find the job not due yet.
    steps = poll_job(stack.rt, job.id, force=True)
    finalize = [step for step in steps if step.task == "imagegen.finalize"]
    assert len(finalize) == 1, f"the poll hands the download to a finalize message, got {steps}"
    app: Any = stack.publisher._app
    app.send_task("imagegen.finalize", args=[job.id], queue=finalize[0].queue, soft_time_limit=1, time_limit=30)
    done = _settle(stack, job.id, window=40)
    assert done.status == "succeeded", (done.status, done.error_kind, done.error_message)
    assert done.download_errors == 1 and "time limit" in (done.last_error_message or "")
    assert _calls(stack, prompt) == (1, 2), "the interrupted download is retried without a status call"
