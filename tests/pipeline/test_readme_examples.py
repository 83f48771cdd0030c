"""The README's Python examples, run as they are against a real ``imagegen api``, worker and simulator.

Every ```` ```python ```` block of the README that reads ``IMAGEGEN_URL`` is a runnable example: it is
run in a fresh interpreter with ``IMAGEGEN_URL``/``IMAGEGEN_TOKEN`` pointing at the stack, and must exit
0. A README edit that breaks one fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Stack, revive_worker, tenant_api_stack

pytestmark = pytest.mark.pipeline

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL) if "IMAGEGEN_URL" in b]


@pytest.fixture(scope="module")
def own_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with tenant_api_stack(database_factory(), tmp_path_factory) as stack:
        yield stack


def test_the_readme_has_runnable_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_example_runs(own_stack: Stack, tmp_path: Path, index: int) -> None:
    revive_worker(own_stack)
    assert own_stack.api_url is not None
    env = {**os.environ, "IMAGEGEN_URL": own_stack.api_url, "IMAGEGEN_TOKEN": "tok-a"}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in re.findall(r'open\("([^"]+\.png)", "wb"\)', BLOCKS[index]):  # the images it says it saves
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
