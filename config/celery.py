"""The Celery configuration, built from ``Settings`` (README, 'Celery settings and why').

Choices, and why:
- ``task_acks_late`` + ``worker_prefetch_multiplier=1``: a message leaves Redis only after its task ran,
  and a worker reserves one message per process, so a slow submit never hides others behind it.
- ``task_reject_on_worker_lost=False`` (Celery's default): a child killed mid-task acks its message
  instead of looping on it; the reconciler recovers the job from the database within seconds.
- ``visibility_timeout`` in ``broker_transport_options`` (the only place kombu reads it for the broker);
  every countdown we publish is capped at ``IMAGEGEN_ETA_MAX_S``, ≤ a tenth of it (enforced by Settings).
- ``worker_eta_task_limit``: countdown messages sit in worker memory; the cap keeps a poll backlog from
  starving submits (longer waits are due times in the DB, released by the reconciler).
- Results ignored: the database is the source of truth. Task events on, for Flower.
- ``worker_cancel_long_running_tasks_on_connection_loss=False``: after a broker reconnect, Celery may
  redeliver a late-ack task while its first run continues. That is harmless here (a second submit
  message finds the job already ``submitting``/``running`` and does nothing; a second poll finds it not
  due), whereas turning it on crashes the worker's main process on reconnect (celery#7185, celery#9250).
- Soft shutdown (10 s, also when idle): on SIGTERM late-ack messages are requeued instead of lost.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue

from config.limits import TIME_LIMITS, async_submit_limits, finalize_time_limits, sync_submit_limits
from config.settings import Settings
from imagegen.constants import (
    FINALIZE_TASK,
    NOTIFY_BATCH_TASK,
    NOTIFY_QUEUE,
    NOTIFY_TASK,
    POLL_QUEUE,
    POLL_TASK,
    QUEUES,
    RECONCILE_QUEUE,
    RECONCILE_TASK,
    SUBMIT_TASK,
    SYNC_QUEUES,
)
from imagegen.messages import Step


def finalize_limits(settings: Settings) -> tuple[float, float]:
    """(soft, hard) time limits of ``imagegen.finalize`` (they follow ``IMAGEGEN_DOWNLOAD_MAX_S``)."""
    return finalize_time_limits(settings)


def publish_options(step: Step, settings: Settings) -> dict[str, Any]:
    """Per-message options: submits get time limits sized for their provider's timeouts."""
    if step.task != SUBMIT_TASK:
        return {}
    if step.queue in SYNC_QUEUES:
        soft, hard = sync_submit_limits(settings)
        return {"soft_time_limit": soft, "time_limit": hard}
    limits = async_submit_limits(settings)
    if limits == TIME_LIMITS[SUBMIT_TASK]:
        return {}  # the task's own limits
    return {"soft_time_limit": limits[0], "time_limit": limits[1]}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for the broker at ``REDIS_URL``."""
    interval = settings.timers.reconcile_interval_s
    return {
        "broker_url": settings.redis_url,
        # kombu's Redis transport plus a fix that keeps a worker alive when Redis restarts.
        "broker_transport": "worker.transport:Transport",
        "broker_transport_options": {
            "visibility_timeout": settings.imagegen_visibility_timeout_s,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 10,
            "retry_on_timeout": True,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_channel_error_retry": True,
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "worker_prefetch_multiplier": 1,
        "worker_eta_task_limit": settings.imagegen_worker_eta_task_limit,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_soft_shutdown_timeout": settings.imagegen_soft_shutdown_s,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_max_tasks_per_child": 10_000,
        "task_default_queue": "celery",
        "task_queues": [Queue(name) for name in QUEUES],
        "task_routes": {
            POLL_TASK: {"queue": POLL_QUEUE},
            FINALIZE_TASK: {"queue": POLL_QUEUE},
            RECONCILE_TASK: {"queue": RECONCILE_QUEUE},
            NOTIFY_TASK: {"queue": NOTIFY_QUEUE},
            NOTIFY_BATCH_TASK: {"queue": NOTIFY_QUEUE},
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "enable_utc": True,
        "timezone": "UTC",
        "beat_schedule": {
            RECONCILE_TASK: {
                "task": RECONCILE_TASK,
                "schedule": interval,
                # A beat running while no worker consumes must not pile up reconcile messages.
                # Its own queue: slow notifications or sends by name never delay (and so expire) it.
                "options": {"expires": max(interval * 2, 5.0), "queue": RECONCILE_QUEUE},
            }
        },
    }
