"""The ``imagegen`` command line against the running pipeline: flags, JSON shapes, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.contract import JOB_KEYS
from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline


def cli(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagegen.cli.main", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_wait_json_success(stack: Stack) -> None:
    prompt = stack.prompt("cli happy [[instant]]")
    done = cli(
        stack,
        "submit",
        "--prompt",
        prompt,
        "--quality",
        "low",
        "--metadata",
        '{"team": "a"}',
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert set(job) >= JOB_KEYS
    assert job["status"] == "succeeded" and job["error"] is None
    assert job["metadata"] == {"team": "a"} and job["request"]["quality"] == "low"
    assert job["result"][0]["url"] and job["result"][0]["path"].endswith(".png")
    assert job["created_at"].endswith("+00:00") and job["finished_at"].endswith("+00:00")
    status = cli(stack, "status", job["id"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["id"] == job["id"]


def test_submit_wait_exit_codes(stack: Stack, resume_after: None) -> None:
    failed = cli(stack, "submit", "--prompt", stack.prompt("[[statusfail]] [[instant]]"), "--wait", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["kind"] == "generation_failed"
    timeout = cli(stack, "submit", "--prompt", stack.prompt("[[never]]"), "--wait", "--timeout", "1")
    assert timeout.returncode == 3
    held = cli(stack, "submit", "--prompt", stack.prompt("[[402]]"), "--wait", "--json")
    assert held.returncode == 3
    assert json.loads(held.stdout)["error"]["kind"] == "insufficient_credits"


def test_bad_input_exits_2_with_one_line(stack: Stack) -> None:
    for args in (
        ["submit", "--prompt", "x", "--quality", "ultra"],
        ["submit", "--prompt", "x", "--metadata", "{"],
        ["status", str(uuid.uuid4())],
        ["status", "nope"],
        ["resume", "--provider", "acme"],
        ["cancel", str(uuid.uuid4())],
    ):
        done = cli(stack, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr


def test_cancel_and_retry_exit_codes(stack: Stack) -> None:
    job_id = cli(stack, "submit", "--prompt", stack.prompt("[[instant]]"), "--wait", "--json")
    job = json.loads(job_id.stdout)
    assert cli(stack, "cancel", job["id"]).returncode == 1  # already succeeded
    assert cli(stack, "retry", job["id"]).returncode == 1  # succeeded jobs are not retried
    running = cli(stack, "submit", "--prompt", stack.prompt("[[never]]")).stdout.strip()
    assert cli(stack, "cancel", running).returncode == 0
    assert json.loads(cli(stack, "status", running, "--json").stdout)["error"]["kind"] == "canceled"
    assert cli(stack, "retry", running).returncode == 0
    assert cli(stack, "cancel", running).returncode == 0


def test_batch_all_or_nothing_and_skip_invalid(stack: Stack, tmp_path: Path) -> None:
    good = stack.prompt("batch line [[instant]]")
    bad = stack.prompt("batch bad line")
    lines = [{"prompt": good}, {"prompt": bad, "size": "banana"}, {"prompt": good + " 2", "quality": "low"}]
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    refused = cli(stack, "batch", str(path), "--json")
    assert refused.returncode == 2
    assert "line 2: size" in refused.stderr and "line 4" in refused.stderr
    assert stack.records(good) == [] and stack.records(bad) == []
    done = cli(stack, "batch", str(path), "--skip-invalid", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["counts"] == {"succeeded": 2}
    assert {j["batch_id"] for j in out["jobs"]} == {out["batch_id"]}
    assert all(j["request"]["priority"] == "batch" for j in out["jobs"])
    assert stack.records(bad) == []
    listed = json.loads(cli(stack, "jobs", "--batch", out["batch_id"], "--json").stdout)
    assert sorted(j["id"] for j in listed) == sorted(j["id"] for j in out["jobs"])
    nowait = json.loads(cli(stack, "batch", str(path), "--skip-invalid", "--json").stdout)
    assert set(nowait) >= {"batch_id", "jobs"} and len(nowait["jobs"]) == 2


def test_jobs_lists_newest_first_with_filters(stack: Stack) -> None:
    done = cli(stack, "jobs", "--status", "succeeded", "--limit", "5", "--json")
    assert done.returncode == 0
    rows = json.loads(done.stdout)
    assert 0 < len(rows) <= 5 and all(r["status"] == "succeeded" for r in rows)
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows), reverse=True)
    table = cli(stack, "jobs", "--limit", "3")
    assert table.returncode == 0 and "status" in table.stdout
