"""The CLI loads only what the command run uses (``imagegen.cli.main``'s lazy command table).

Each check runs a fresh interpreter, so what it reports is what a real ``imagegen …`` process imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from imagegen.cli.main import COMMANDS, load_command, main
from imagegen.store.db import head_revision, shipped_head

ROOT = Path(__file__).resolve().parents[2]

#: Stacks that ``imagegen --help`` must not load (it needs click and two small modules).
HEAVY = {
    "alembic",
    "celery",
    "config",
    "fastapi",
    "httpx",
    "kombu",
    "PIL",
    "prometheus_client",
    "pydantic",
    "redis",
    "rich",
    "sqlalchemy",
    "sqlmodel",
    "starlette",
    "uvicorn",
}

_REPORT = """
import json, sys
from imagegen.cli.main import main
try:
    code = main({argv!r}, standalone_mode=False)
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def _run(argv: list[str], tmp_path: Path) -> tuple[object, set[str]]:
    """Run ``imagegen argv`` in a fresh interpreter: its exit code and every module it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "DATABASE_URL"))}
    env["IMAGEGEN_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _REPORT.format(argv=argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def _roots(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_help_loads_click_and_nothing_heavy(tmp_path: Path) -> None:
    code, modules = _run(["--help"], tmp_path)
    assert code == 0
    assert not _roots(modules) & HEAVY, sorted(_roots(modules) & HEAVY)
    assert {m for m in modules if m.startswith("imagegen")} == {
        "imagegen",
        "imagegen.cli",
        "imagegen.cli.main",
        "imagegen.cli.output",
    }


def test_status_loads_the_database_but_no_service_stack(tmp_path: Path) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert _run(["status", missing], tmp_path)[0] == 2  # a new database: its schema is created first
    code, modules = _run(["status", missing], tmp_path)
    assert code == 2  # no such job
    assert "sqlalchemy" in _roots(modules)
    loaded = _roots(modules) & {"alembic", "celery", "fastapi", "kombu", "PIL", "redis", "starlette", "uvicorn"}
    assert not loaded, sorted(loaded)
    core = {
        m for m in modules if m.startswith(("imagegen.runtime", "imagegen.providers", "imagegen.jobs", "imagegen.api"))
    }
    assert not core, sorted(core)


def test_help_summaries_are_the_commands_docstrings() -> None:
    for name, (_, summary) in COMMANDS.items():
        command = load_command(name)
        first_paragraph = (command.help or "").split("\n\n")[0]
        assert " ".join(summary.split()) == " ".join(first_paragraph.split()), name
    # With every command loaded, click's own listing (from the commands) matches the table's.
    ctx = click.Context(main, info_name="imagegen")
    from_table, from_commands = ctx.make_formatter(), ctx.make_formatter()
    main.format_commands(ctx, from_table)
    click.Group.format_commands(main, ctx, from_commands)
    assert from_table.getvalue() == from_commands.getvalue()


def test_every_command_name_matches_its_table_entry() -> None:
    for name in COMMANDS:
        assert load_command(name).name == name


def test_the_schema_check_reads_the_head_alembic_reads() -> None:
    """``ensure_schema`` skips Alembic when the database is at ``shipped_head()``: it must be Alembic's head."""
    assert shipped_head() is not None
    assert shipped_head() == head_revision("sqlite://")
