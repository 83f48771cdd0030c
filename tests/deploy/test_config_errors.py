"""A bad setting stops every entry point with one line naming the variable, exit 2, no traceback.

Each entry point runs as a real process (the CLI, ``imagegen api``, ``celery -A worker worker`` and
``celery -A worker beat``) with one invalid variable in an otherwise clean environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_BIN = Path(sys.executable).parent
_PREFIXES = ("IMAGEGEN_", "APIDOT_", "OPENAI_", "IMAGE2_", "REDIS_URL", "DATABASE_URL")

ENTRY_POINTS = {
    "cli jobs": [str(_BIN / "imagegen"), "jobs"],
    "cli submit": [str(_BIN / "imagegen"), "submit", "--prompt", "a cat"],
    "api": [str(_BIN / "imagegen"), "api", "--port", "0"],
    "worker": [str(_BIN / "celery"), "-A", "worker", "worker", "--pool", "solo"],
    "beat": [str(_BIN / "celery"), "-A", "worker", "beat"],
}

#: (variable, bad value, words the one line must contain besides the variable name)
BAD = [
    ("IMAGEGEN_POLL_MIN_S", "abc", "number"),
    ("IMAGEGEN_PROVIDER_LIMITS", '{"apidott": {"rate_per_s": 5}}', "unknown provider"),
    ("IMAGEGEN_WEBHOOK_SECRET", "not-a-whsec-secret", "whsec_"),
    ("IMAGEGEN_SUBMIT_LEASE_S", "30", "imagegen.submit"),
]


def _run(argv: list[str], tmp_path: Path, name: str, value: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_PREFIXES)}
    env.update(IMAGEGEN_HOME=str(tmp_path / "home"), REDIS_URL="redis://127.0.0.1:1/0", **{name: value})
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize(("name", "value", "words"), BAD[:1])
def test_every_entry_point_reports_a_bad_variable_in_one_line(
    tmp_path: Path, entry: str, name: str, value: str, words: str
) -> None:
    done = _run(ENTRY_POINTS[entry], tmp_path, name, value)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert name in lines[0] and words in lines[0], lines[0]


@pytest.mark.parametrize(("name", "value", "words"), BAD[1:])
@pytest.mark.parametrize("entry", ["cli jobs", "worker"])
def test_cross_checked_and_provider_keyed_settings_fail_at_start(
    tmp_path: Path, entry: str, name: str, value: str, words: str
) -> None:
    done = _run(ENTRY_POINTS[entry], tmp_path, name, value)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, lines
    assert name in lines[0] and words in lines[0], lines[0]
    assert value not in lines[0] or name != "IMAGEGEN_WEBHOOK_SECRET"  # a secret is never echoed


#: Values pydantic takes as numbers but no timer, timedelta or URL parser downstream can use.
UNUSABLE = [
    ("IMAGEGEN_DEFAULT_DEADLINE_S", "inf", "finite"),
    ("IMAGEGEN_DEFAULT_DEADLINE_S", "1e300", "at most"),
    ("IMAGEGEN_RECONCILE_INTERVAL_S", "inf", "finite"),
    ("IMAGEGEN_RECONCILE_INTERVAL_S", "1e300", "at most"),
    ("DATABASE_URL", "nope", "not a database URL"),
    ("IMAGEGEN_WORKER_METRICS_PORT", "99999", "65535"),
]


@pytest.mark.parametrize(("name", "value", "words"), UNUSABLE, ids=[f"{n}={v}" for n, v, _ in UNUSABLE])
@pytest.mark.parametrize("entry", ["cli submit", "api", "beat"])
def test_unusable_numbers_and_urls_fail_at_start(tmp_path: Path, entry: str, name: str, value: str, words: str) -> None:
    """Before: ``inf``/``1e300`` seconds were OverflowError tracebacks at the first job or beat tick, and a
    DATABASE_URL that does not parse a traceback from the CLI and ``imagegen api``."""
    done = _run(ENTRY_POINTS[entry], tmp_path, name, value)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, lines
    assert name in lines[0] and words in lines[0], lines[0]
