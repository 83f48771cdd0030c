"""Comments, docstrings and docs cite only what a clone contains: no product-spec sections, no issue numbers.

A reader of a clone has the README, docs/, public URLs and upstream issues (``celery#8030``), but not the
spec the project was built from, its issue tracker's numbering, or files outside the repository. This scans
every tracked ``*.py`` and ``*.md`` file and lists each line that cites one of those anyway.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "build", "dist", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}

# Built from pieces so that this file does not match itself.
FORBIDDEN = re.compile(
    "|".join(
        (
            "SP" + r"EC\b",
            "\u00a7",  # the section sign
            r"\bis" + r"sue \d",
            r"\.\./sha" + "red",
        )
    )
)


def _tracked_files() -> list[Path]:
    """Tracked ``*.py`` and ``*.md`` files; a walk of the tree when this is not a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", "*.py", "*.md"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return [
            p
            for p in ROOT.rglob("*")
            if p.suffix in {".py", ".md"} and p.is_file() and not SKIP_DIRS & set(p.relative_to(ROOT).parts)
        ]
    return [ROOT / name for name in out.split("\0") if name]


def test_the_scan_sees_the_repository() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _tracked_files()}
    assert {"README.md", "imagegen/__init__.py", "tests/unit/test_request.py"} <= names


def test_the_pattern_catches_what_it_is_for() -> None:
    for cited in ("see " + "SP" + "EC", "\u00a7 3", "is" + "sue 6 item 5", "../sha" + "red/reference/x.md"):
        assert FORBIDDEN.search(cited), cited
    for fine in ("SPEC_EDGES", "SPECIAL_NETWORKS", "celery#8030", "the README's error table", "reissue 6"):
        assert not FORBIDDEN.search(fine), fine


def test_no_citation_a_clone_cannot_follow() -> None:
    hits = []
    for path in _tracked_files():
        if not path.is_file():  # deleted in the work tree but still in the index
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT).as_posix()}:{number}: {line.strip()}")
    assert not hits, "cite the README, docs/, a public URL or an upstream issue instead:\n" + "\n".join(hits)
