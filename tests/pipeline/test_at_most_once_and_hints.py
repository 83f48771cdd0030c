"""On a private pipeline (``at_most_once``, backoff base 1 s / cap 2 s, no image2 or OpenAI key): one POST
for a submit whose outcome is unknown, Retry-After values that are no hint, and providers without a key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise

import pytest

from imagegen import devstack
from imagegen.store import repo
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def strict(database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_proc, redis_url = devstack.start_redis()
    stack = start_stack(
        redis_url,
        database_factory(),
        tmp_path_factory,
        IMAGEGEN_SUBMIT_POLICY="at_most_once",
        IMAGEGEN_BACKOFF_BASE_S="1",
        IMAGEGEN_BACKOFF_CAP_S="2",
        IMAGE2_API_KEY="",
        OPENAI_API_KEY="",
    )
    try:
        yield stack
    finally:
        stack.close()
        redis_proc.stop()


def _created(stack: Stack, prompt: str) -> int:
    return sum(1 for r in stack.records(prompt, "submit") if r["task_id"])


# --- submit outcome unknown under at_most_once -------------------------------------------------------


@pytest.mark.parametrize("fault", ["submitstall:4", "submitlost:502"])
def test_at_most_once_makes_exactly_one_post(strict: Stack, fault: str) -> None:
    prompt = strict.prompt(f"one paid call only [[{fault}]]")
    job_id = strict.submit(prompt)
    job = strict.wait(job_id, timeout=60)
    assert (job.status, job.error_kind) == ("failed", "submit_outcome_unknown")
    assert (strict.submits(prompt), _created(strict, prompt), job.unknown_submits) == (1, 1, 1)
    assert strict.records(prompt, "submit")[0].get("idempotency_key") == job_id


def test_at_most_once_still_retries_answers(strict: Stack) -> None:
    # A 503 is an answer (nothing was created): retried on the upstream_unavailable budget, even here.
    prompt = strict.prompt("overloaded once [[503x1]] [[instant]]")
    job = strict.wait(strict.submit(prompt), timeout=60)
    assert job.status == "succeeded" and strict.submits(prompt) == 2


# --- Retry-After 0, negative or past is no hint -------------------------------------------------------


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


def test_retry_after_zero_does_not_send_the_429_budget_at_once(strict: Stack) -> None:
    prompt = strict.prompt("always 429 with Retry-After: 0 [[429:ra=0]]")
    job = strict.wait(strict.submit(prompt), timeout=90)
    assert (job.status, job.error_kind, job.submit_attempts) == ("failed", "rate_limited", 10)
    times = [r["time"] for r in strict.records(prompt, "submit")]
    gaps = _gaps(times)
    # Full-jitter backoff (base 1 s, cap 2 s) between the 10 calls: about 8.5 s in all, each gap random
    # (the bounds leave room for chance: below them is about 1 in 10,000). Before: all 10 in 0.09 s.
    assert times[-1] - times[0] > 2.0, gaps
    assert sum(g < 0.1 for g in gaps) <= 4, gaps


@pytest.mark.parametrize("hint", ["ra=-5", "pastdate"])
def test_negative_or_past_retry_after_on_polls_backs_off(strict: Stack, hint: str) -> None:
    prompt = strict.prompt(f"status 429 [[poll429x6:{hint}]] [[instant]]")
    job = strict.wait(strict.submit(prompt), timeout=90)
    assert job.status == "succeeded"
    times = [r["time"] for r in strict.records(prompt, "status")]
    assert len(times) == 7
    gaps = _gaps(times)[:6]  # the six waits after a 429 (base 1 s, cap 2 s: about 5.5 s in all)
    assert times[6] - times[0] > 1.0, gaps  # before: 0.05 s
    assert sum(g < 0.1 for g in gaps) <= 3, gaps


# --- a provider without an API key ---------------------------------------------------------------------


def test_provider_without_key_is_held_without_calling_upstream(strict: Stack) -> None:
    prompt = strict.prompt("no key configured [[instant]]")
    job = strict.wait(strict.submit(prompt, provider="image2"), timeout=30)
    assert (job.status, job.error_kind) == ("held", "auth_failed")
    assert job.error_message == "IMAGE2_API_KEY is not set"
    assert strict.records(prompt) == [], "nothing may be sent without a key"
    with strict.rt.session() as s:
        state = repo.get_provider_state(s, "image2")
    assert state is not None and state.paused and state.reason == "auth_failed"
    assert state.message == "IMAGE2_API_KEY is not set"
    # The paused key parks its other jobs: still nothing upstream.
    other = strict.prompt("second job on the unkeyed provider")
    second = strict.wait(strict.submit(other, provider="image2"), timeout=10, statuses={"queued", "held"})
    assert second.status in {"queued", "held"} and strict.records(other) == []


def test_openai_without_key_is_held_too(strict: Stack) -> None:
    prompt = strict.prompt("openai with no key")
    job = strict.wait(strict.submit(prompt, provider="openai"), timeout=30)
    assert (job.status, job.error_kind, job.error_message) == ("held", "auth_failed", "OPENAI_API_KEY is not set")
    assert strict.records(prompt) == []
