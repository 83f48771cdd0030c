"""A throwaway pipeline for benchmarks: private Redis, simulator, worker, beat (and the API), and helpers."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from celery import Celery
from sqlmodel import col

from config.celery import celery_config
from config.settings import Settings
from imagegen import devstack
from imagegen.producer import create_batch, publish_submits
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import TERMINAL
from worker.app import create_app
from worker.publisher import CeleryPublisher


class BenchStack:
    """Everything one benchmark run needs; ``close()`` stops it all."""

    def __init__(self, env: dict[str, str], *, concurrency: int = 2, with_api: bool = False, workers: int = 1) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="imagegen-bench-"))
        self.procs: list[devstack.Process] = []
        redis_proc, redis_url = devstack.start_redis()
        self.procs.append(redis_proc)
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            # BENCH_DATABASE_URL runs a benchmark on another database (e.g. PostgreSQL); default: a fresh SQLite.
            "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{self.dir / 'bench.db'}",
            "IMAGEGEN_HOME": str(self.dir),
            "APIDOT_API_KEY": "bench",
            "IMAGEGEN_ALLOW_PRIVATE_URLS": "true",
            "IMAGEGEN_SOFT_SHUTDOWN_S": "1",
            **env,
        }
        try:
            self._start(workers=workers, concurrency=concurrency, with_api=with_api)
        except BaseException:
            devstack.stop_all(list(reversed(self.procs)), timeout=15)  # the Redis too
            raise

    def _start(self, *, workers: int, concurrency: int, with_api: bool) -> None:
        """Everything but the Redis: services, this process's runtime, a warm-up job through the worker."""
        services = devstack.start_services(
            self.env, log_dir=self.dir, workers=workers, concurrency=concurrency, api=with_api
        )
        self.procs += services.processes
        self.env, self.sim_url = services.env, services.sim_url
        # This process's runtime sees what the workers see (simulator URL, key, expected durations, …).
        fields = {k.lower(): v for k, v in self.env.items() if k.lower() in Settings.model_fields}
        settings = Settings(**{**fields, "imagegen_home": self.dir})
        self.rt = Runtime.create(settings)
        self.publisher = CeleryPublisher(create_app(settings, name="bench"))
        warm = self.submit([f"warm-up {uuid.uuid4()} [[instant]]"])
        self.wait(warm, timeout=60, until={"running", "succeeded"})  # the worker serves submits

    def submit(self, prompts: Sequence[str], **fields: Any) -> list[str]:
        """Queue one job per prompt (one batch); returns the ids."""
        _, jobs = create_batch(self.rt, [ImageRequest(prompt=p, **fields) for p in prompts])
        publish_submits(self.publisher, jobs)
        return [j.id for j in jobs]

    def wait(self, ids: Sequence[str], timeout: float, until: set[str] | None = None) -> list[Job]:
        """Until every job is terminal, or in ``until`` (or raise); returns the jobs.

        Checks with one COUNT per tick (loading every row each tick would steal the workers' CPU)."""
        deadline = time.monotonic() + timeout
        ended = until or {s.value for s in TERMINAL}
        while True:
            done = 0
            with self.rt.session() as s:
                for chunk in range(0, len(ids), 500):
                    part = list(ids[chunk : chunk + 500])
                    query = sa.select(sa.func.count()).where(col(Job.id).in_(part), col(Job.status).in_(ended))
                    done += s.execute(query).scalar_one()
            if done >= len(ids):
                with self.rt.session() as s:
                    return [j for j in (repo.get_job(s, i) for i in ids) if j is not None]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{len(ids)} done (logs: {self.dir})")
            time.sleep(0.25)

    def records(self) -> list[dict[str, Any]]:
        """The simulator's request record."""
        return list(httpx.get(f"{self.sim_url}/_sim/requests", timeout=60).json())

    def tasks(self) -> dict[str, dict[str, Any]]:
        """The simulator's tasks by id (with their finish times)."""
        return {t["task_id"]: t for t in httpx.get(f"{self.sim_url}/_sim/tasks", timeout=60).json()}

    def start_bare_worker(
        self, name: str, *, queues: str, concurrency: int, env: dict[str, str] | None = None
    ) -> devstack.Process:
        """A bare Celery worker (``bench.baseline_app``: our broker settings, none of our code) for a baseline."""
        argv = [sys.executable, "-m", "celery", "-A", "bench.baseline_app", "worker", "-P", "prefork"]
        argv += ["-c", str(concurrency), "-Q", queues, "-l", "WARNING", "--without-mingle", "--without-gossip"]
        return devstack.Process(name, argv, env={**self.env, **(env or {})}, log_path=self.dir / f"{name}.log")

    def bare_producer(self) -> Celery:
        """A Celery app with our broker settings, to send the baselines' messages."""
        producer = Celery("bench-producer")
        producer.conf.update({k: v for k, v in celery_config(self.rt.settings).items() if k != "beat_schedule"})
        return producer

    def mem_mb(self, prefix: str) -> float:
        """Memory (PSS) of the processes named ``prefix…`` and their children, in MiB."""
        return group_mem_mb({p.pid for p in self.procs if p.name.startswith(prefix)})

    def cpu_s(self, prefix: str) -> float:
        """CPU seconds (user + system) used so far by the processes named ``prefix…`` and their children."""
        return group_cpu_s({p.pid for p in self.procs if p.name.startswith(prefix)})

    def close(self) -> None:
        """Stop every process."""
        self.rt.close()
        devstack.stop_all(list(reversed(self.procs)), timeout=15)


def group_cpu_s(groups: set[int]) -> float:
    """CPU seconds used so far by every live process in these process groups (from ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as handle:
                # Fields after the parenthesised command name: state ppid pgrp ... utime(14) stime(15).
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def group_mem_mb(groups: set[int]) -> float:
    """Memory of every process in these process groups, in MiB: the sum of their PSS (proportional set size,
    so pages a prefork parent shares with its children count once), or of their RSS where PSS is unknown."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) not in groups:
                continue
            total += _pss_kib(pid)
        except (OSError, ProcessLookupError):
            continue
    return total / 1024


def _pss_kib(pid: str) -> int:
    for path, field in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path) as handle:
                for line in handle:
                    if line.startswith(field):
                        return int(line.split()[1])
        except FileNotFoundError:
            continue
    return 0
