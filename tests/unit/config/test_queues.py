"""Submit routing: batch-priority jobs of the synchronous provider have their own queue."""

from __future__ import annotations

from config.celery import publish_options
from config.settings import Settings
from imagegen.constants import QUEUES
from imagegen.messages import submit_step


def test_openai_batch_jobs_get_their_own_queue() -> None:
    assert submit_step("j", "batch", "openai").queue == "openai-batch"
    assert submit_step("j", "interactive", "openai").queue == "openai"
    assert submit_step("j", "batch", "apidot").queue == "batch"
    assert submit_step("j", "interactive", "image2").queue == "interactive"
    assert {"openai", "openai-batch"} <= set(QUEUES)  # a plain worker consumes both


def test_openai_batch_submits_carry_the_long_time_limits() -> None:
    settings = Settings()
    batch = publish_options(submit_step("j", "batch", "openai"), settings)
    assert batch == publish_options(submit_step("j", "interactive", "openai"), settings)
    assert batch["time_limit"] > 60
    assert publish_options(submit_step("j", "batch", "apidot"), settings) == {}
