"""``imagegen``: the command group, and the table that loads each command's module when it runs.

This is a deliberate lazy command loader, not an import cycle dodged: ``COMMANDS`` maps every command
name to the ``module:attribute`` of its click command, imported (``importlib``) only when that command
is run, or asked for its own ``--help``. ``imagegen --help`` lists the commands from the table's
one-line summaries, so it loads none of them. The commands' modules import what they use at their
top, as usual; this module imports only click and ``imagegen.cli.output`` (exit codes, ``fail``), so a
command pays only for its own stack (``imagegen status`` never loads FastAPI, Alembic, Redis or the
providers). ``tests/unit/test_cli_imports.py`` pins both: what importing this module loads, and that
each summary is its command's docstring.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from imagegen.cli.output import BAD_INPUT, GAVE_UP, OK, fail

#: Every command: name -> (``module:attribute`` of its click command, the first paragraph of its
#: docstring, which ``imagegen --help`` shows without importing the module).
COMMANDS: dict[str, tuple[str, str]] = {
    "api": (
        "imagegen.cli.serve:api",
        "Serve the HTTP API: intake (/v1), upstream webhooks, /healthz, /metrics, /docs.",
    ),
    "batch": ("imagegen.cli.intake:batch", "Queue one request per JSONL line (all-or-nothing unless --skip-invalid)."),
    "cancel": ("imagegen.cli.control:cancel", "Cancel a job that has not ended (exit 1 if it already ended)."),
    "db": ("imagegen.cli.database:db", "Database maintenance."),
    "demo": (
        "imagegen.cli.demo:demo",
        "Start Redis (if needed), the simulator, a worker and beat; run a mixed batch; print the results.",
    ),
    "jobs": ("imagegen.cli.ops:jobs", "List jobs, newest first."),
    "liveness": (
        "imagegen.cli.health:liveness",
        "Exit 1 when work is waiting but the worker has stopped finishing tasks (a health check).",
    ),
    "purge": (
        "imagegen.cli.ops:purge",
        "Delete ended jobs (with their attempt log, deliveries and local result files); never active ones.",
    ),
    "requeue": (
        "imagegen.cli.ops:requeue",
        "Queue failed (or expired, canceled) jobs again in bulk: a new upstream submit each.",
    ),
    "resume": (
        "imagegen.cli.control:resume",
        "Unpause a provider key (after topping up or rotating it) and release its held jobs.",
    ),
    "retry": (
        "imagegen.cli.control:retry",
        "Queue a failed, expired or canceled job again (a new upstream submit); --failed: many at once.",
    ),
    "simulator": ("imagegen.cli.sim:simulator", "Run the local fake of the providers' HTTP APIs."),
    "stats": (
        "imagegen.cli.ops:stats",
        "Counts, throughput, p50/p95 durations, calls per job and credits spent over a window.",
    ),
    "status": ("imagegen.cli.show:status", "Show one job (exit 0 whatever its status; 2 if there is no such job)."),
    "submit": ("imagegen.cli.intake:submit", "Queue one image request."),
}


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` and return its click command (KeyError: no such command)."""
    module, _, attribute = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{COMMANDS[name][0]} is not a click command")
    return command


class LazyGroup(click.Group):
    """A click group whose commands come from ``COMMANDS``, each imported when it is first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """click's, with "Did you mean …" drawn from every command name (it only sees loaded ones)."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            every = self.list_commands(ctx)
            raise click.exceptions.NoSuchCommand(exc.command_name, possibilities=every, ctx=ctx) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands:" section of ``--help`` from the table, loading no command. A bare
        ``click.Command`` carrying the summary shortens it exactly as click shortens a docstring."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            listed = click.Command(name, help=COMMANDS[name][1]) if name in COMMANDS else self.commands[name]
            rows.append((name, listed.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class _Imagegen(LazyGroup):
    """The ``imagegen`` group: a bad setting, wherever a command first reads them, is one line, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # A ConfigError can only come from config.settings once a command has loaded it; looking it
            # up here keeps the settings (pydantic, SQLAlchemy's URL parser) out of ``--help``.
            settings = sys.modules.get("config.settings")
            if settings is not None and isinstance(exc, settings.ConfigError):
                fail(str(exc))
            raise


@click.group(cls=_Imagegen, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """imagegen-queue: a Celery + Redis worker for asynchronous image-generation APIs."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


__all__ = ["BAD_INPUT", "COMMANDS", "GAVE_UP", "OK", "main"]


if __name__ == "__main__":
    main()
