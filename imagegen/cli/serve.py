"""``imagegen api``: serve the HTTP API (intake, upstream webhooks, health, metrics) with uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType

import click
import uvicorn

from imagegen.api import create_app
from imagegen.cli.runtime import open_runtime


class ClosingServer(uvicorn.Server):
    """uvicorn's server, telling waits and event streams at SIGTERM that the process is stopping.

    uvicorn drains open connections before it runs the app's shutdown: without this, every open wait
    and stream would hold the exit until ``timeout_graceful_shutdown`` cut it off mid-answer. Told at
    once, a wait answers 202 with its job and a stream ends cleanly (its client reconnects elsewhere).
    """

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Close the change feed, then stop as uvicorn does."""
        self._on_exit()
        super().handle_exit(sig, frame)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the HTTP API: intake (/v1), upstream webhooks, /healthz, /metrics, /docs."""
    # The runtime is built here so a schema that is behind stops us with one clear line, not a traceback.
    rt = open_runtime()
    try:
        # Open event streams and waits would otherwise hold a SIGTERM until their jobs end.
        uvicorn.run(create_app(runtime=rt), host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
    finally:
        rt.close()
