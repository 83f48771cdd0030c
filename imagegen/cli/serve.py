"""``imagegen api``: serve the HTTP API (intake, upstream webhooks, health, metrics) with uvicorn."""

from __future__ import annotations

import click
import uvicorn

from imagegen.api import create_app
from imagegen.cli.runtime import open_runtime


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
