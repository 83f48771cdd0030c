"""Celery signal handlers: per-process resources after fork, and redacted task arguments for monitors."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import before_task_publish, worker_process_init, worker_process_shutdown

from imagegen.redaction import redact_task_args
from imagegen.runtime import close_runtime, get_runtime

log = logging.getLogger(__name__)


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    # Fresh DB engine and httpx client in every prefork child (pools are not fork-safe).
    get_runtime()


@worker_process_shutdown.connect
def _close_process(**_: Any) -> None:
    close_runtime()


@before_task_publish.connect
def _redact(headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
    # Flower and `celery events` show argsrepr/kwargsrepr: never a prompt, a URL or a key.
    if headers is None or not isinstance(body, list | tuple) or len(body) < 2:
        return
    args, kwargs = body[0], body[1]
    headers["argsrepr"], headers["kwargsrepr"] = redact_task_args(headers.get("task"), args, kwargs)
