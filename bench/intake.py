"""Intake throughput: N requests queued through each entry point, against a bare Celery ``send_task`` loop
of N messages, on the same private Redis and database, in the same run:
- ``imagegen batch`` on an N-line JSONL file (the real CLI process, start-up included);
- ``POST /v1/batches`` with N requests to a real ``imagegen api``;
- ``enqueue_batch`` in this process (validation included).
No worker consumes: after each run the queues are checked (exactly N submit messages) and emptied.

    python -m bench.intake [--n 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import httpx
import redis
import sqlalchemy as sa
from celery import Celery

from bench.stack import group_cpu_s
from config.celery import celery_config
from config.settings import Settings
from imagegen import devstack
from imagegen.constants import QUEUES
from imagegen.producer import enqueue_batch
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from worker.app import create_app
from worker.publisher import CeleryPublisher

TOKEN = "bench-token"
BASELINE = "bare send_task loop"


class IntakeStack:
    """A private Redis, a migrated database and ``imagegen api`` (no worker, no beat); ``close()`` stops them."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="imagegen-bench-intake-"))
        self.redis_proc, redis_url = devstack.start_redis()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            # BENCH_DATABASE_URL runs the benchmark on another database (e.g. PostgreSQL); default: a fresh SQLite.
            "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{self.dir / 'bench.db'}",
            "IMAGEGEN_HOME": str(self.dir),
            "IMAGEGEN_API_TOKENS": TOKEN,
        }
        try:
            self.services = devstack.start_services(env, log_dir=self.dir, workers=0, beat=False, api=True)
        except BaseException:
            self.redis_proc.stop()
            raise
        self.env = self.services.env
        fields = {k.lower(): v for k, v in self.env.items() if k.lower() in Settings.model_fields}
        self.rt = Runtime.create(Settings(**{**fields, "imagegen_home": self.dir}))
        self.publisher = CeleryPublisher(create_app(self.rt.settings, name="bench-intake"))
        self.broker = redis.Redis.from_url(redis_url)
        self.batches: list[str] = []

    @property
    def database(self) -> str:
        return "PostgreSQL" if self.rt.engine.dialect.name == "postgresql" else "SQLite"

    def bare_producer(self) -> Celery:
        """A plain Celery app with our broker settings (task-sent events included), none of our code."""
        producer = Celery("bench-producer")
        producer.conf.update({k: v for k, v in celery_config(self.rt.settings).items() if k != "beat_schedule"})
        return producer

    def check_and_purge(self, n: int, batch_id: str | None) -> None:
        """Exactly ``n`` messages wait (and ``n`` rows of the batch exist); then the queues are emptied."""
        waiting = sum(self.broker.llen(q) for q in QUEUES)
        assert waiting == n, f"{waiting} messages on the broker, expected {n}"
        if batch_id is not None:
            self.batches.append(batch_id)
            with self.rt.session() as s:
                stored = s.execute(sa.text("SELECT count(*) FROM jobs WHERE batch_id = :b"), {"b": batch_id})
                assert stored.scalar_one() == n, "rows missing"
        self.broker.delete(*QUEUES)

    def close(self) -> None:
        """Delete this run's rows (a shared PostgreSQL keeps none of them), stop every process."""
        try:
            with self.rt.session() as s:
                for batch_id in self.batches:
                    s.execute(sa.text("DELETE FROM jobs WHERE batch_id = :b"), {"b": batch_id})
        finally:
            self.rt.close()
            self.services.stop()
            self.redis_proc.stop()


def items(n: int) -> list[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    return [{"prompt": f"intake {tag} {i}", "quality": "low"} for i in range(n)]


class Run(NamedTuple):
    """One entry point's figures for N requests."""

    seconds: float  #: wall time, from the first request to the last message on the broker
    cpu_s: float  #: CPU of the process doing the intake (this one, the CLI process, or the API server)


def bare_loop(stack: IntakeStack, n: int) -> Run:
    producer = stack.bare_producer()
    producer.send_task("imagegen.submit", args=[str(uuid.uuid4())], queue="batch")  # connect outside the timing
    stack.broker.delete(*QUEUES)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    start, cpu = time.perf_counter(), time.process_time()
    for job_id in ids:
        producer.send_task("imagegen.submit", args=[job_id], queue="batch")
    run = Run(time.perf_counter() - start, time.process_time() - cpu)
    producer.close()
    stack.check_and_purge(n, None)
    return run


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_batch(stack: IntakeStack, n: int) -> Run:
    path = stack.dir / f"batch-{uuid.uuid4().hex[:8]}.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items(n)), encoding="utf-8")
    argv = [sys.executable, "-m", "imagegen.cli.main", "batch", str(path), "--json"]
    start, cpu = time.perf_counter(), children_cpu_s()
    done = subprocess.run(argv, env=stack.env, capture_output=True, text=True, timeout=600)
    run = Run(time.perf_counter() - start, children_cpu_s() - cpu)
    assert done.returncode == 0, done.stderr[-2000:]
    stack.check_and_purge(n, json.loads(done.stdout)["batch_id"])
    return run


def api_batch(stack: IntakeStack, n: int) -> Run:
    body = json.dumps({"requests": items(n)}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    api = {p.pid for p in stack.services.processes if p.name == "api"}
    with httpx.Client(base_url=stack.services.api_url or "", timeout=600) as client:
        start, cpu = time.perf_counter(), group_cpu_s(api)
        response = client.post("/v1/batches", content=body, headers=headers)
        run = Run(time.perf_counter() - start, group_cpu_s(api) - cpu)
    assert response.status_code == 202, response.text[:2000]
    stack.check_and_purge(n, response.json()["batch_id"])
    return run


def python_batch(stack: IntakeStack, n: int) -> Run:
    data = items(n)
    start, cpu = time.perf_counter(), time.process_time()
    requests = [ImageRequest.from_dict(item, priority="batch") for item in data]
    batch_id, _ = enqueue_batch(requests, publisher=stack.publisher, runtime=stack.rt)
    run = Run(time.perf_counter() - start, time.process_time() - cpu)
    stack.check_and_purge(n, batch_id)
    return run


RUNS: dict[str, Callable[[IntakeStack, int], Run]] = {
    BASELINE: bare_loop,
    "imagegen batch (CLI process)": cli_batch,
    "POST /v1/batches (imagegen api)": api_batch,
    "enqueue_batch (Python)": python_batch,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="requests per entry point (and baseline messages)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is the best of them")
    args = parser.parse_args()
    stack = IntakeStack()
    best: dict[str, Run] = {}
    try:
        # Interleaved rounds: a burst of load from elsewhere on the machine hits every row alike.
        for _ in range(args.repeat):
            for name, measure in RUNS.items():
                run = measure(stack, args.n)
                seen = best.get(name, run)
                best[name] = Run(min(seen.seconds, run.seconds), min(seen.cpu_s, run.cpu_s))
        database = stack.database
    finally:
        stack.close()
    n = args.n
    print(f"N={n} requests per entry point, best of {args.repeat} round(s) ({database}, private redis-server)")
    print("ratios: the bare send_task loop's seconds (or CPU) over the entry point's; CPU: the intake process")
    print(f"{'entry point':34} {'seconds':>8} {'jobs/s':>8} {'vs bare':>8} {'CPU ms/job':>11} {'CPU vs bare':>12}")
    bare = best[BASELINE]
    for name, run in best.items():
        rate, cpu_ms = n / run.seconds, 1000 * run.cpu_s / n
        print(
            f"{name:34} {run.seconds:8.2f} {rate:8.0f} {bare.seconds / run.seconds:7.2f}x"
            f" {cpu_ms:11.3f} {bare.cpu_s / run.cpu_s:11.2f}x"
        )


if __name__ == "__main__":
    main()
