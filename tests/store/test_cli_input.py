"""The CLI refuses bad input with exit 2 and one line: filters, --timeout, short ids, reused idempotency keys.

Every command runs as a real ``imagegen`` process against a migrated database of its own; the jobs it
looks at are written through the producer API first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.db import upgrade

pytestmark = pytest.mark.store

_PREFIXES = ("IMAGEGEN_", "APIDOT_", "OPENAI_", "IMAGE2_", "REDIS_URL", "DATABASE_URL")
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"

#: Two ids sharing their first 8 characters (the short id `imagegen jobs` prints), and one apart.
TWIN_A = "abcdef12-0000-4000-8000-000000000001"
TWIN_B = "abcdef12-0000-4000-8000-000000000002"
LONER = "12345678-0000-4000-8000-000000000003"

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def env(database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    url = database_factory()
    upgrade(url)
    home = tmp_path_factory.mktemp("cli-home")
    rt = Runtime.create(Settings(database_url=url, redis_url=UNREACHABLE_REDIS, imagegen_home=home))
    for job_id, prompt, key in ((TWIN_A, "twin a", None), (TWIN_B, "twin b", None), (LONER, "loner", "order-9")):
        create_job(rt, ImageRequest(prompt=prompt, idempotency_key=key), job_id=job_id)
    rt.close()
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(_PREFIXES)}
    yield {**clean, "DATABASE_URL": url, "REDIS_URL": UNREACHABLE_REDIS, "IMAGEGEN_HOME": str(home)}


@pytest.fixture
def cli(env: dict[str, str]) -> Cli:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "imagegen.cli.main", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])

    return run


def _refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--status", "faild", ("faild", "succeeded", "queued")),
        ("--provider", "apidott", ("apidott", "image2")),
        ("--error-kind", "rate_limit", ("rate_limit", "rate_limited")),
        ("--tenant", "a b", ("letters, digits",)),
    ],
)
def test_jobs_filters_are_validated(cli: Cli, flag: str, value: str, words: tuple[str, ...]) -> None:
    _refused(cli("jobs", flag, value), flag, *words)


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "--prompt", "x", "--timeout", "5"),
        ("submit", "--prompt", "x", "--wait", "--timeout", "0"),
        ("submit", "--prompt", "x", "--wait", "--timeout", "-3"),
        ("batch", "{batch}", "--timeout", "5"),
        ("batch", "{batch}", "--wait", "--timeout", "0"),
    ],
)
def test_timeout_must_be_positive_and_needs_wait(cli: Cli, tmp_path: Path, args: tuple[str, ...]) -> None:
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"prompt": "x"}\n')
    _refused(cli(*(str(batch) if a == "{batch}" else a for a in args)), "--timeout")


def test_jobs_filters_by_tenant(cli: Cli) -> None:
    every = cli("jobs", "--tenant", "default", "--json")
    assert every.returncode == 0, every.stderr
    assert {j["id"] for j in json.loads(every.stdout)} == {TWIN_A, TWIN_B, LONER}
    assert {j["tenant"] for j in json.loads(every.stdout)} == {"default"}
    assert json.loads(cli("jobs", "--tenant", "nobody", "--json").stdout) == []


def test_status_accepts_a_unique_short_id(cli: Cli) -> None:
    done = cli("status", LONER[:8])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(LONER)


def test_an_ambiguous_short_id_lists_the_candidates(cli: Cli) -> None:
    for command in ("status", "cancel", "retry"):
        _refused(cli(command, TWIN_A[:8]), "ambiguous", TWIN_A, TWIN_B)


def test_an_unknown_short_id_is_refused(cli: Cli) -> None:
    _refused(cli("status", "fedcba98"), "no job")
    _refused(cli("status", "ab"), "job_id")  # too short to be a prefix of one job


def test_cancel_and_retry_take_short_ids(cli: Cli) -> None:
    done = cli("cancel", LONER[:8])
    assert done.returncode == 0 and LONER in done.stdout, done.stderr
    done = cli("retry", LONER[:8])
    assert done.returncode == 0 and LONER in done.stdout, done.stderr


def test_a_reused_idempotency_key_with_another_request_is_exit_2_naming_the_key(cli: Cli) -> None:
    _refused(cli("submit", "--prompt", "not the loner", "--idempotency-key", "order-9"), "order-9")
    same = cli("submit", "--prompt", "loner", "--idempotency-key", "order-9")
    assert (same.returncode, same.stdout.strip()) == (0, LONER), same.stderr


def test_batch_refuses_a_bad_callback_url_and_keeps_a_good_one(cli: Cli, env: dict[str, str], tmp_path: Path) -> None:
    lines = tmp_path / "hooked.jsonl"
    lines.write_text('{"prompt": "hooked one"}\n{"prompt": "hooked two"}\n')
    line = _refused(cli("batch", str(lines), "--callback-url", "ftp://hooks.example/b"), "callback_url", "https")
    assert "nothing was queued" in line
    done = cli("batch", str(lines), "--callback-url", "https://hooks.example/b", "--json")
    assert done.returncode == 0, done.stderr
    batch_id = json.loads(done.stdout)["batch_id"]
    rt = Runtime.create(Settings(database_url=env["DATABASE_URL"], redis_url=UNREACHABLE_REDIS))
    try:
        with rt.session() as s:
            row = repo.get_batch(s, batch_id)
            jobs = repo.list_jobs(s, batch_id=batch_id, limit=10)
    finally:
        rt.close()
    assert row is not None and row.callback_url == "https://hooks.example/b"
    assert len(jobs) == 2 and all(j.batch_callback for j in jobs)
