"""What `pip install imagegen-queue` (no extras) gives operators: a working `celery -A worker flower`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_flower_is_a_main_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "flower" in {_name(r) for r in project["dependencies"]}
    # The installed distribution's metadata says the same, outside any extra.
    installed = [r for r in requires("imagegen-queue") or [] if _name(r) == "flower"]
    assert installed and all("extra ==" not in r for r in installed), installed


def test_celery_flower_command_runs() -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "No such command" not in done.stderr
    assert "monitoring and administrating Celery clusters" in done.stdout
