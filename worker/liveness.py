"""Stamp worker progress in Redis after every task (read by ``imagegen liveness``)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import redis
from celery.signals import task_postrun

from config.settings import get_settings
from imagegen.ops.liveness import stamp_progress

log = logging.getLogger(__name__)
_client: tuple[int, redis.Redis] | None = None
_last_stamp = 0.0
#: A stamp a second is plenty for a check measured in minutes, and spares Redis a SET per task.
STAMP_EVERY_S = 1.0


def _redis() -> redis.Redis:
    global _client
    if _client is None or _client[0] != os.getpid():  # one client per forked child
        _client = (os.getpid(), redis.Redis.from_url(get_settings().redis_url, socket_timeout=2))
    return _client[1]


@task_postrun.connect
def _stamp(task: Any = None, **_: Any) -> None:
    global _last_stamp
    hostname = getattr(getattr(task, "request", None), "hostname", None)
    now = time.monotonic()
    if not hostname or now - _last_stamp < STAMP_EVERY_S:
        return
    _last_stamp = now
    try:
        stamp_progress(_redis(), hostname)
    except redis.RedisError:  # liveness is advisory; never fail a task over it
        log.debug("could not stamp progress", exc_info=True)
