"""Prometheus metrics observed where things happen (upstream calls, job endings).

Worker processes are prefork children, so these use prometheus_client's multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set (it must be set in the worker's environment before start); the
worker then serves them on ``IMAGEGEN_WORKER_METRICS_PORT`` (see worker/metrics.py). Counts of jobs by
status come from the database instead (imagegen/api/metrics.py): only the database knows them exactly.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

#: Upstream calls take milliseconds (status) to minutes (a synchronous render).
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

UPSTREAM_SECONDS = Histogram(
    "imagegen_upstream_request_seconds",
    "Upstream HTTP call latency.",
    ["provider", "endpoint"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "imagegen_upstream_errors_total", "Failed upstream calls by error kind.", ["provider", "endpoint", "error_kind"]
)
UPSTREAM_429 = Counter("imagegen_upstream_429_total", "Upstream answers with HTTP 429.", ["provider", "endpoint"])
JOBS_ENDED = Counter(
    "imagegen_jobs_ended_total", "Jobs reaching a terminal status, by status and error kind.", ["status", "error_kind"]
)
UNKNOWN_JOB_MESSAGES = Counter(
    "imagegen_unknown_job_messages_total",
    "Task messages naming a job id this database does not have (acked and dropped).",
    ["task"],
)
POLLS_PER_JOB = Histogram(
    "imagegen_polls_per_job",
    "Status calls a finished job needed.",
    ["provider"],
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50),
)


def observe_call(provider: str, endpoint: str, seconds: float, http_status: int | None, error_kind: str | None) -> None:
    """One upstream call (endpoint: ``submit`` or ``status``)."""
    UPSTREAM_SECONDS.labels(provider, endpoint).observe(seconds)
    if error_kind:
        UPSTREAM_ERRORS.labels(provider, endpoint, error_kind).inc()
    if http_status == 429:
        UPSTREAM_429.labels(provider, endpoint).inc()


def observe_end(status: str, error_kind: str | None) -> None:
    """A job reached a terminal status (counted by the process whose transition won)."""
    JOBS_ENDED.labels(status, error_kind or "").inc()


def observe_unknown_job(task: str, job_id: str) -> None:
    """A message named a job this database does not have: say so, and count it.

    Usually two deployments share one Redis, or a producer and a worker use different databases; the
    message is dropped either way (the database is the source of truth), but never silently.
    """
    log.warning(
        "%s: no job %s in this database (another deployment on the same broker, or a different DATABASE_URL?)",
        task,
        job_id,
    )
    UNKNOWN_JOB_MESSAGES.labels(task).inc()
