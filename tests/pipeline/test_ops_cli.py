"""``imagegen stats``, ``requeue`` and ``purge`` as processes against a real pipeline run.

They run as ``python -m imagegen.cli.ops`` (the ``imagegen`` group with the operator commands
registered), which is ``imagegen`` itself once ``imagegen.cli.main`` calls ``ops.register``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imagegen.ops import actions as admin
from imagegen.store import repo
from tests.support.stack import Stack

pytestmark = pytest.mark.pipeline


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagegen.cli.main", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_json(stack: Stack, *args: str) -> Any:
    done = cli(stack, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_stats_reports_a_mixed_run(ops_stack: Stack) -> None:
    before = cli_json(ops_stack, "stats", "--since", "1h")
    ids = [
        ops_stack.submit(ops_stack.prompt("stats low"), quality="low"),
        ops_stack.submit(ops_stack.prompt("stats high 2K"), quality="high", resolution="2K", size="16:9"),
        ops_stack.submit(ops_stack.prompt("stats [[statusfail]]"), quality="high"),
        ops_stack.submit(ops_stack.prompt("stats [[429x1]]"), quality="low", resolution="4K"),
    ]
    statuses = [ops_stack.wait(job_id).status for job_id in ids]
    assert statuses == ["succeeded", "succeeded", "failed", "succeeded"]
    after = cli_json(ops_stack, "stats", "--since", "1h")

    def delta(section: str, key: str, name: str) -> int:
        return int(after[section][key].get(name, 0)) - int(before[section][key].get(name, 0))

    assert delta("finished", "by_status", "succeeded") == 3
    assert delta("finished", "by_status", "failed") == 1
    assert delta("finished", "by_error_kind", "generation_failed") == 1
    assert delta("created", "by_status", "succeeded") == 3
    # low/1K 1 + high/2K 24 + low/4K 4; the failed high job costs nothing.
    assert after["credits"]["total"] - before["credits"]["total"] == 29
    assert delta("credits", "by_tier", "high/2K") == 24 and delta("credits", "by_tier", "low/4K") == 4
    durations = after["durations_s"]
    created_to_end, upstream = durations["created_to_finished"], durations["submitted_to_finished"]
    assert created_to_end["count"] >= 3 and 0 < created_to_end["p50"] <= created_to_end["p95"] < 60
    assert 0 < upstream["p50"] <= created_to_end["p95"]
    assert after["per_job"]["submit_attempts"] >= 1 and after["per_job"]["polls"] >= 1
    assert after["finished"]["per_minute"] > 0 and after["window"]["minutes"] == 60
    # One provider, and the human form.
    assert cli_json(ops_stack, "stats", "--since", "1h", "--provider", "openai")["credits"]["total"] == 0
    human = cli(ops_stack, "stats", "--since", "2h")
    assert human.returncode == 0, human.stderr
    assert "last 2h" in human.stdout and f"credits     {after['credits']['total']}" in human.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["stats", "--since", "banana"], "--since"),
        (["stats", "--provider", "dalle"], "--provider"),
        (["purge", "--older-than", "banana"], "--older-than"),
        (["purge"], "--older-than"),
        (["purge", "--older-than", "30d", "--status", "running"], "--status"),
        (["requeue", "--status", "running"], "--status"),
        (["requeue", "--error-kind", "upstream_unavailible"], "--error-kind"),
        (["requeue", "--since", "yesterday"], "--since"),
    ],
)
def test_bad_input_exits_2_with_one_line(ops_stack: Stack, args: list[str], flag: str) -> None:
    done = cli(ops_stack, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_requeue_failed_jobs_by_error_kind(ops_stack: Stack) -> None:
    # Six 500s use up the submit budget (IMAGEGEN_MAX_SUBMITS_UNAVAILABLE); the seventh is the last.
    flaky_prompt = ops_stack.prompt("requeue me [[500x7]]")
    flaky = ops_stack.submit(flaky_prompt, quality="low")
    broken = ops_stack.submit(ops_stack.prompt("leave me [[statusfail]]"), quality="low")
    first = ops_stack.wait(flaky)
    assert (first.status, first.error_kind) == ("failed", "upstream_unavailable")
    assert ops_stack.wait(broken).error_kind == "generation_failed"
    assert ops_stack.submits(flaky_prompt) == 6

    flags = ["--status", "failed", "--error-kind", "upstream_unavailable", "--since", "10m"]
    dry = cli_json(ops_stack, "requeue", *flags, "--dry-run")
    assert flaky in dry["jobs"] and broken not in dry["jobs"] and dry["dry_run"] is True
    assert ops_stack.job(flaky).status == "failed"

    done = cli(ops_stack, "requeue", *flags)
    assert done.returncode == 0, done.stderr
    assert "requeued" in done.stdout and flaky in done.stdout and broken not in done.stdout
    again = ops_stack.wait(flaky)
    assert again.status == "succeeded" and again.error_kind is None
    assert ops_stack.submits(flaky_prompt) == 8  # one more 500, then the success
    assert ops_stack.job(broken).status == "failed"
    assert flaky not in cli_json(ops_stack, "requeue", *flags, "--dry-run")["jobs"]


def test_purge_deletes_ended_jobs_and_their_files_only(ops_stack: Stack) -> None:
    done_id = ops_stack.submit(ops_stack.prompt("purge me"), quality="low")
    failed_id = ops_stack.submit(ops_stack.prompt("purge me too [[statusfail]]"), quality="low")
    running_id = ops_stack.submit(ops_stack.prompt("keep me running [[never]]"), quality="low")
    done = ops_stack.wait(done_id)
    ops_stack.wait(failed_id)
    ops_stack.wait(running_id, statuses={"running"})
    files = [Path(r["path"]) for r in done.result or []]
    assert files and all(f.is_file() for f in files)
    time.sleep(1.2)

    dry = cli_json(ops_stack, "purge", "--older-than", "1s", "--dry-run")
    assert dry["dry_run"] is True and dry["jobs"] >= 2 and dry["files"] >= len(files) and dry["attempts"] >= 3
    assert ops_stack.job(done_id) and all(f.is_file() for f in files)

    only_failed = cli_json(ops_stack, "purge", "--older-than", "1s", "--status", "failed")
    assert only_failed["jobs"] >= 1 and _gone(ops_stack, failed_id) and not _gone(ops_stack, done_id)

    purged = cli(ops_stack, "purge", "--older-than", "1s")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("deleted ") and "result files" in purged.stdout
    assert _gone(ops_stack, done_id) and not any(f.exists() for f in files)
    with ops_stack.rt.session() as s:
        assert repo.list_attempts(s, done_id) == [] and repo.list_attempts(s, failed_id) == []
    assert ops_stack.job(running_id).status == "running"  # never touched
    assert admin.cancel(ops_stack.rt, running_id).ok


def _gone(stack: Stack, job_id: str) -> bool:
    with stack.rt.session() as s:
        return repo.get_job(s, job_id) is None


def test_a_database_that_fails_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "IMAGEGEN_HOME": str(tmp_path)}
    for args in (["stats"], ["requeue"], ["purge", "--older-than", "30d"]):
        done = subprocess.run(
            [sys.executable, "-m", "imagegen.cli.main", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("error: database: ") and len(done.stderr.strip().splitlines()) == 1


def test_requeue_with_the_broker_down_leaves_the_rest_to_the_reconciler(ops_stack: Stack) -> None:
    job_id = ops_stack.submit(ops_stack.prompt("broker down [[statusfail]]"), quality="low")
    assert ops_stack.wait(job_id).status == "failed"
    env = {**ops_stack.env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [sys.executable, "-m", "imagegen.cli.main", "requeue", "--error-kind", "generation_failed", "--since", "1m"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert job_id in done.stdout and "could not be sent" in done.stderr and "Traceback" not in done.stderr
    # Nothing was published, yet the job runs again: the reconciler releases it after the dispatch grace.
    again = ops_stack.wait(job_id, timeout=60)
    assert again.status == "failed" and again.submit_attempts == 2  # [[statusfail]] fails it again
