"""A batch-priority OpenAI job goes through its own ``openai-batch`` queue on a plain worker."""

from __future__ import annotations

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline


def test_openai_batch_job_is_served(stack: Stack) -> None:
    prompt = stack.prompt("openai batch")
    job = stack.wait(stack.submit(prompt, provider="openai", priority="batch", quality="low"), timeout=60)
    assert job.status == "succeeded"
    assert stack.submits(prompt) == 1
