"""The CLI's exit codes, its one-line errors and its JSON output: what every command (and the group) needs.

It imports nothing but click, so ``imagegen --help`` can use it; showing jobs (tables, the progress bar)
is ``imagegen.cli.render``.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

#: Exit codes (README "Using it").
OK, SOME_FAILED, BAD_INPUT, GAVE_UP = 0, 1, 2, 3


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    """Print one clear line to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def print_json(value: Any) -> None:
    """JSON on stdout."""
    click.echo(json.dumps(value, indent=2, default=str))
