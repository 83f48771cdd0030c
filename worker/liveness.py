"""Stamp worker progress in Redis after every task (read by ``imagegen liveness``)."""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery.signals import task_postrun

from config.settings import get_settings
from imagegen.liveness import stamp_progress

log = logging.getLogger(__name__)
_client: tuple[int, redis.Redis] | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None or _client[0] != os.getpid():  # one client per forked child
        _client = (os.getpid(), redis.Redis.from_url(get_settings().redis_url, socket_timeout=2))
    return _client[1]


@task_postrun.connect
def _stamp(task: Any = None, **_: Any) -> None:
    hostname = getattr(getattr(task, "request", None), "hostname", None)
    if not hostname:
        return
    try:
        stamp_progress(_redis(), hostname)
    except redis.RedisError:  # liveness is advisory; never fail a task over it
        log.debug("could not stamp progress", exc_info=True)
