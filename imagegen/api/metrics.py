"""Prometheus metrics computed from the database at scrape time (``GET /metrics``).

A custom collector rather than gauges updated by code paths: the database is the source of truth and
many processes change it, so the only correct count is the one read when Prometheus asks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import redis
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from imagegen.constants import PROVIDERS, QUEUES
from imagegen.runtime import Runtime
from imagegen.store.models import Job, ProviderState
from imagegen.store.softredis import queue_depths
from imagegen.store.transitions import JobStatus

log = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """``imagegen_jobs{status, error_kind}``, ``imagegen_providers_paused{provider}``, ``imagegen_database_up``."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime  # resolved per scrape: the app may build its runtime after registering us

    def describe(self) -> Iterable[Metric]:
        """Nothing: describing would make the registry scrape the database at registration time."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Read the counts (one GROUP BY for jobs); a database error yields ``imagegen_database_up 0`` only."""
        up = GaugeMetricFamily("imagegen_database_up", "Whether the last scrape could read the database.")
        try:
            jobs, paused = self._read()
        except SQLAlchemyError:
            log.warning("metrics scrape could not read the database", exc_info=True)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, jobs, paused]

    def _read(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "imagegen_jobs", "Jobs by status and error kind (empty error_kind: none).", labels=["status", "error_kind"]
        )
        # Every status appears, at 0 when empty, so dashboards and alerts see explicit zeros.
        counts: dict[tuple[str, str], int] = {(s.value, ""): 0 for s in JobStatus}
        paused = {name: 0 for name in PROVIDERS}
        stmt = sa.select(col(Job.status), col(Job.error_kind), sa.func.count()).group_by(
            col(Job.status), col(Job.error_kind)
        )
        # A deferred read: the count never queues behind (nor blocks) a write transaction on SQLite.
        with self._runtime().read_session() as s:
            for status, kind, n in s.execute(stmt).all():
                counts[(status, kind or "")] = int(n)
            for provider, is_paused in s.execute(sa.select(col(ProviderState.provider), col(ProviderState.paused))):
                paused[provider] = int(bool(is_paused))
        for (status, kind), n in sorted(counts.items()):
            jobs.add_metric([status, kind], n)
        gauge = GaugeMetricFamily("imagegen_providers_paused", "1 while a provider key is paused.", labels=["provider"])
        for provider, value in sorted(paused.items()):
            gauge.add_metric([provider], value)
        return jobs, gauge


class QueueCollector(Collector):
    """``imagegen_queue_depth{queue}``: messages waiting in each Celery queue (Flower has no such metric)."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime

    def describe(self) -> Iterable[Metric]:
        """Nothing (no broker round trip at registration)."""
        return []

    def collect(self) -> Iterable[Metric]:
        """One LLEN per queue; an unreachable broker yields no samples (healthz reports it)."""
        depth = GaugeMetricFamily("imagegen_queue_depth", "Messages waiting per Celery queue.", labels=["queue"])
        try:
            client = redis.Redis.from_url(
                self._runtime().settings.redis_url, socket_timeout=1, socket_connect_timeout=1
            )
            lengths = queue_depths(client, QUEUES)
        except redis.RedisError:
            return []
        for queue, length in lengths.items():
            depth.add_metric([queue], length)
        return [depth]


def build_registry(runtime: Callable[[], Runtime]) -> CollectorRegistry:
    """A registry of our own (not the global one), so each app, and each test, has its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(runtime))
    registry.register(QueueCollector(runtime))
    return registry
