"""``imagegen simulator``: the local fake of the providers' HTTP APIs (it loads nothing of the core)."""

from __future__ import annotations

import click

from imagegen.simulator.app import run


@click.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=8800)
def simulator(host: str, port: int) -> None:
    """Run the local fake of the providers' HTTP APIs."""
    run(host, port)
