"""OpenAI and image2 through the real pipeline, result storage, and fallback routing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imagegen.store import repo
from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline


def _check_stored(entry: dict[str, Any]) -> None:
    path = Path(entry["path"])
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert entry["size"] == len(data) and entry["content_type"] == "image/png"
    with Image.open(path) as image:
        assert (entry["width"], entry["height"]) == image.size


def test_apidot_result_is_stored_with_checksum(stack: Stack) -> None:
    job = stack.wait(stack.submit(stack.prompt("stored [[instant]]")))
    assert job.status == "succeeded"
    (entry,) = job.result or []
    assert entry["url"].endswith(".png")
    _check_stored(entry)


def test_image2_async_provider(stack: Stack) -> None:
    prompt = stack.prompt("image2 [[instant]]")
    job = stack.wait(stack.submit(prompt, provider="image2", model="gpt-image-2", size="1024x1024"))
    assert job.status == "succeeded", job.error_message
    assert job.upstream_task_id and job.upstream_task_id.startswith("img2-")
    _check_stored((job.result or [])[0])
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 1)


@pytest.mark.parametrize(
    ("directive", "status", "kind"),
    [
        ("[[statusfail]] [[instant]]", "failed", "generation_failed"),
        ("[[safetyfail]] [[instant]]", "failed", "content_rejected"),
        ("[[400]]", "failed", "invalid_request"),
    ],
)
def test_image2_error_rows(stack: Stack, directive: str, status: str, kind: str) -> None:
    job = stack.wait(stack.submit(stack.prompt(f"image2 {directive}"), provider="image2"))
    assert (job.status, job.error_kind) == (status, kind)


def test_openai_synchronous_generation(stack: Stack) -> None:
    prompt = stack.prompt("openai [[instant]]")
    job = stack.wait(stack.submit(prompt, provider="openai", quality="low", size="1024x1024"))
    assert job.status == "succeeded", job.error_message
    assert job.upstream_task_id is None and job.polls == 0 and job.submit_attempts == 1
    assert job.usage and "total_tokens" in job.usage
    (entry,) = job.result or []
    assert entry["url"] is None  # b64_json: there is no upstream URL, only our copy
    _check_stored(entry)
    assert (stack.submits(prompt), stack.polls(prompt)) == (1, 0)


@pytest.mark.parametrize(
    ("directive", "status", "kind", "submits"),
    [
        ("[[moderation]]", "failed", "content_rejected", 1),
        ("[[400]]", "failed", "invalid_request", 1),
        ("[[429x2:noheader]] [[instant]]", "succeeded", None, 3),
        ("[[503x1]] [[instant]]", "succeeded", None, 2),
    ],
)
def test_openai_error_rows(stack: Stack, directive: str, status: str, kind: str | None, submits: int) -> None:
    prompt = stack.prompt(f"openai {directive}")
    job = stack.wait(stack.submit(prompt, provider="openai"))
    assert (job.status, job.error_kind) == (status, kind)
    assert stack.submits(prompt) == submits


def test_openai_quota_holds_like_402(stack: Stack, resume_after: None) -> None:
    job = stack.wait(stack.submit(stack.prompt("openai [[quota]]"), provider="openai"))
    assert (job.status, job.error_kind, job.error_http_status) == ("held", "insufficient_credits", 429)


def test_paused_provider_falls_back_to_the_next(stack: Stack, resume_after: None) -> None:
    prompt = stack.prompt("route me [[apidot:402]] [[instant]]")
    job = stack.wait(stack.submit(prompt, fallback=["openai"]))
    assert job.status == "succeeded", job.error_message
    assert job.provider == "openai"
    with stack.rt.session() as s:
        kinds = [(a.kind, a.provider, a.error_kind) for a in repo.list_attempts(s, job.id)]
        assert repo.get_provider_state(s, "apidot").paused  # type: ignore[union-attr]
    assert kinds == [
        ("submit", "apidot", "insufficient_credits"),
        ("fallback", "apidot", "insufficient_credits"),
        ("submit", "openai", None),
    ]
    # A queued job on the paused key with a fallback moves on at once, without calling apidot.
    second = stack.prompt("queued while paused [[instant]]")
    moved = stack.wait(stack.submit(second, fallback=["image2"]))
    assert (moved.status, moved.provider) == ("succeeded", "image2")
    assert [r["provider"] for r in stack.records(second, "submit")] == ["image2"]


def test_budget_spent_falls_back(stack: Stack) -> None:
    prompt = stack.prompt("apidot down [[apidot:500]] [[instant]]")
    job = stack.wait(stack.submit(prompt, fallback=["image2"]), timeout=60)
    assert (job.status, job.provider) == ("succeeded", "image2")
    providers = [r["provider"] for r in stack.records(prompt, "submit")]
    assert providers == ["apidot"] * 6 + ["image2"]


def test_openai_edit_with_a_local_image_file(stack: Stack, tmp_path: Path) -> None:
    import io
    import json
    import subprocess
    import sys

    reference = tmp_path / "ref.png"
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, "PNG")
    reference.write_bytes(buffer.getvalue())
    prompt = stack.prompt("edit this [[instant]]")
    argv = [
        sys.executable,
        "-m",
        "imagegen.cli.main",
        "submit",
        "--provider",
        "openai",
        "--prompt",
        prompt,
        "--image-file",
        str(reference),
        "--wait",
        "--json",
    ]
    done = subprocess.run(argv, env=stack.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["request"]["image_files"][0].startswith("uploads/")
    (record,) = stack.records(prompt, "submit")
    assert record["path"].endswith("/images/edits") and record["image_count"] == 1
    assert record["image_bytes"] == [len(buffer.getvalue())]


def test_image_file_for_a_url_only_provider_is_refused(stack: Stack, tmp_path: Path) -> None:
    import subprocess
    import sys

    reference = tmp_path / "ref.png"
    Image.new("RGB", (8, 8)).save(reference, "PNG")
    submit = [sys.executable, "-m", "imagegen.cli.main", "submit", "--provider", "image2", "--prompt", "x"]
    argv = [*submit, "--image-file", str(reference)]
    done = subprocess.run(argv, env=stack.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "image_files" in done.stderr and "takes image URLs only" in done.stderr


def test_a_mapped_fallback_succeeds_on_the_next_hop(stack: Stack, resume_after: None) -> None:
    """An apidot ``1:1`` request whose key is out of credits is sent to openai as ``1024x1024``."""
    prompt = stack.prompt("square route [[apidot:402]] [[instant]]")
    job = stack.wait(stack.submit(prompt, size="1:1", quality="low", fallback=["openai"]))
    assert (job.status, job.provider, job.error_message) == ("succeeded", "openai", None)
    assert job.request["provider"] == "openai" and job.request["size"] == "1024x1024"
    assert "fallback" not in job.request
    assert [r["provider"] for r in stack.records(prompt, "submit")] == ["apidot", "openai"]
