"""Cost per job: Redis commands, DB statements and upstream calls, ours vs bare Celery.

Redis: ``INFO commandstats`` before and after N jobs through the real pipeline (worker, beat and the
reconciler included), divided by N. Upstream calls: the simulator's record. DB statements: the same job
flow (submit, poll, finalize) replayed in this process with an SQLAlchemy statement counter, since worker
processes are not observable from here, for a batch without and with a ``callback_url`` (whose jobs'
endings also ask whether the batch finished). Baseline: bare Celery moving 2 messages per job with one
UPDATE each.

    python -m bench.cost [--jobs 200]
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import redis
import sqlalchemy as sa

from bench.stack import BenchStack
from bench.throughput import ENV, baseline
from imagegen.constants import FINALIZE_TASK
from imagegen.jobs.finalize import finalize_job
from imagegen.jobs.poll import poll_job
from imagegen.jobs.submit import submit_job
from imagegen.producer import create_batch
from imagegen.request import ImageRequest
from imagegen.store import repo


def redis_calls(client: redis.Redis) -> int:
    """Total commands the server has executed (excluding INFO itself)."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def statements_per_job(stack: BenchStack, jobs: int, callback_url: str | None = None) -> tuple[float, float]:
    """(statements, transactions) per job for submit + poll + finalize, replayed in-process (the jobs are
    one batch, with ``callback_url`` if given)."""
    counts = {"statements": 0, "transactions": 0}

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):  # counted as transactions
            counts["statements"] += 1

    def on_begin(*_: Any) -> None:
        counts["transactions"] += 1

    requests = [ImageRequest(prompt=f"cost {uuid.uuid4().hex} {i}") for i in range(jobs)]
    _, rows = create_batch(stack.rt, requests, callback_url=callback_url)
    sa.event.listen(stack.rt.engine, "before_cursor_execute", on_statement)
    sa.event.listen(stack.rt.engine, "begin", on_begin)
    try:
        for job in rows:
            submit_job(stack.rt, job.id)
            for step in poll_job(stack.rt, job.id):
                if step.task == FINALIZE_TASK:
                    finalize_job(stack.rt, job.id)  # the result download is its own message
    finally:
        sa.event.remove(stack.rt.engine, "before_cursor_execute", on_statement)
        sa.event.remove(stack.rt.engine, "begin", on_begin)
    done = sum(1 for job in rows if _status(stack, job.id) == "succeeded")
    assert done == jobs, f"the replay must take every job to succeeded ({done}/{jobs})"
    return counts["statements"] / jobs, counts["transactions"] / jobs


def _status(stack: BenchStack, job_id: str) -> str | None:
    with stack.rt.session() as s:
        job = repo.get_job(s, job_id)
        return job.status if job else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    stack = BenchStack(ENV)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        before = redis_calls(client)
        tag = uuid.uuid4().hex[:8]
        ids = stack.submit([f"cost {tag} {i}" for i in range(args.jobs)], priority="batch")
        stack.wait(ids, timeout=600)
        ours_redis = (redis_calls(client) - before) / args.jobs
        calls = [r for r in stack.records() if r["endpoint"] in ("submit", "status") and tag in (r["prompt"] or "")]
        ours_upstream = len(calls) / args.jobs
        for proc in stack.procs:
            if proc.name.startswith("worker"):
                proc.stop()
        statements, transactions = statements_per_job(stack, 100)
        hooked, hooked_txns = statements_per_job(stack, 100, callback_url="https://hooks.example/batch")
        # Baseline: bare Celery, same Redis, 2 messages and 2 UPDATEs per job.
        marks: list[int] = []
        baseline(stack, args.jobs, 2, on_ready=lambda: marks.append(redis_calls(client)))
        base_redis = (redis_calls(client) - marks[0]) / args.jobs
    finally:
        stack.close()
    print(f"jobs={args.jobs}")
    print(f"{'':14} {'redis cmds/job':>15} {'db statements/job':>18} {'db txns/job':>12} {'upstream calls/job':>19}")
    print(f"{'ours':14} {ours_redis:15.1f} {statements:18.1f} {transactions:12.1f} {ours_upstream:19.2f}")
    print(f"{'  + batch hook':14} {'':15} {hooked:18.1f} {hooked_txns:12.1f} {'':19}")
    print(f"{'bare celery':14} {base_redis:15.1f} {2.0:18.1f} {2.0:12.1f} {0.0:19.2f}")


if __name__ == "__main__":
    main()
