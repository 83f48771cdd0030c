"""One tiny run of every benchmark, so the scripts do not rot (the figures live in docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.bench


def run(module: str, *args: str, timeout: float = 240) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_polling() -> None:
    out = run("bench.polling", "--jobs", "200")
    assert "informed + progress (ours)" in out and "calls vs fixed 5 s" in out


def test_throughput() -> None:
    out = run("bench.throughput", "--jobs", "10")
    assert "ours / bare celery" in out and "ours / naive loop" in out


def test_cost() -> None:
    out = run("bench.cost", "--jobs", "5")
    assert "redis cmds/job" in out


def test_webhooks() -> None:
    out = run("bench.webhooks", "--jobs", "2")
    assert "webhook / polling" in out


def test_ratelimit() -> None:
    out = run("bench.ratelimit", "--rate", "10", "--jobs", "10")
    assert "ours (Redis GCRA)" in out and "celery rate_limit" in out


def test_scale() -> None:
    out = run("bench.scale", "--jobs", "40", "--durations", "uniform:0.5:1.5", "--concurrency", "2")
    assert "succeeded=40" in out and "peak" in out and "one countdown message per in-flight job" in out


def test_startup() -> None:
    out = run("bench.startup", "--runs", "1", timeout=120)
    assert "celery --help" in out and "imagegen --help" in out and "imagegen status <missing>" in out


def test_intake() -> None:
    out = run("bench.intake", "--n", "50", "--repeat", "1")
    assert "vs bare" in out and "CPU ms/job" in out and "bare send_task loop" in out
    assert "imagegen batch (CLI process)" in out and "POST /v1/batches" in out and "enqueue_batch (Python)" in out
