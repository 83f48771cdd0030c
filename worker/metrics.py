"""Serve the worker's Prometheus metrics (multiprocess mode) on ``IMAGEGEN_WORKER_METRICS_PORT``.

prometheus_client's multiprocess mode needs ``PROMETHEUS_MULTIPROC_DIR`` in the worker's environment
before it starts (children write their samples to files there); the main process serves the sum.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_init, worker_process_shutdown
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from config.settings import get_settings

log = logging.getLogger(__name__)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    port = get_settings().imagegen_worker_metrics_port
    if not port:
        return
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("IMAGEGEN_WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not: no worker metrics")
        return
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
    log.info("worker metrics on :%d/metrics", port)


@worker_process_shutdown.connect
def _mark_dead(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())
