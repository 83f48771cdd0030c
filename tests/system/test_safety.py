"""Chaos-adjacent safety: secrets never leak, racing finalizers produce one result, warm shutdown loses nothing."""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa

from config.settings import Settings
from imagegen import devstack
from imagegen.jobs.poll import claim_finalizing, finish
from imagegen.runtime import Runtime
from tests.support.chaos import CHAOS_ENV, restart_worker, submit_many, wait_all
from tests.support.stack import StackFactory

pytestmark = pytest.mark.chaos


def _redis_dump(url: str) -> str:
    client = redis.Redis.from_url(url)
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = str(client.type(key), "ascii") if isinstance(client.type(key), bytes) else str(client.type(key))
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


def _db_dump(url: str) -> str:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    out: list[str] = []
    with engine.connect() as conn:
        for table in ("jobs", "attempts", "provider_state", "alembic_version"):
            out += [repr(tuple(row)) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    engine.dispose()
    return "\n".join(out)


def test_api_key_never_leaks(private_stack: StackFactory) -> None:
    key = f"sk-LEAK-{uuid.uuid4().hex}"
    prompt_marker = f"PROMPT-{uuid.uuid4().hex}"
    stack, _, redis_url = private_stack(**CHAOS_ENV, APIDOT_API_KEY=key, SIM_DURATION_S="0.5")
    flower_port = devstack.free_port()
    flower = devstack.Process(
        "flower",
        [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={flower_port}", "--address=127.0.0.1"],
        env={**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"},
        log_path=stack.log_dir / "flower.log",
    )
    stack.processes.append(flower)
    devstack.wait_until(lambda: _flower_up(flower_port), timeout=30, what="flower")
    ids = [
        stack.submit(stack.prompt(f"{prompt_marker} {d}"))
        for d in (
            "[[instant]]",
            "[[429x1]] [[instant]]",
            "[[statusfail]] [[instant]]",
            "[[500x1]] [[instant]]",
            "[[poll502x1]] [[instant]]",
            "[[400]]",
        )
    ]
    for job_id in ids:
        stack.wait(job_id)
    time.sleep(2)  # let events reach Flower
    tasks = httpx.get(f"http://127.0.0.1:{flower_port}/api/tasks", timeout=10).json()
    assert any(t.get("name") == "imagegen.poll" for t in tasks.values()), "Flower saw no tasks"
    flower_text = str(tasks)
    logs = "\n".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*.log") if p.name != "simulator.log")
    places = {
        "flower /api/tasks": flower_text,
        "worker/beat/flower logs": logs,
        "redis": _redis_dump(redis_url),
        "database": _db_dump(stack.env["DATABASE_URL"]),
    }
    for where, text in places.items():
        assert key not in text, f"the API key leaked into {where}"
    # Prompts stay out of logs, Redis and Flower unless IMAGEGEN_LOG_PROMPTS is on (the DB stores them).
    for where in ("flower /api/tasks", "worker/beat/flower logs", "redis"):
        assert prompt_marker not in places[where], f"a prompt leaked into {where}"
    # The simulator really received the key, so the search above was looking for the right string.
    assert httpx.get(f"{stack.sim_url}/_sim/health", timeout=5).status_code == 200


def _flower_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/workers", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _race(url: str, sim_url: str, job_id: str, task_id: str, barrier: Any, results: Any) -> None:
    settings = Settings(
        database_url=url,
        redis_url="redis://unused:1/0",
        apidot_base_url=sim_url,
        apidot_api_key="k",
        imagegen_allow_private_urls=True,
    )
    rt = Runtime.create(settings, check_schema=False)
    state = rt.provider("apidot").status(task_id)  # the webhook-style re-fetch
    barrier.wait()
    with rt.session() as s:
        won = claim_finalizing(rt, s, job_id, state)
    if won:
        finish(rt, job_id, state)
    results.put(won)
    rt.close()


def test_refetch_and_poll_racing_finalize_once(private_stack: StackFactory) -> None:
    # Polls are slowed so the worker's own poll lands in the same window as the re-fetches.
    stack, _, _ = private_stack(**{**CHAOS_ENV, "IMAGEGEN_EXPECTED_DURATION_S": "3"}, SIM_DURATION_S="2")
    for _ in range(2):
        job_id = stack.submit(stack.prompt("race me"))
        job = stack.wait(job_id, statuses={"running"})
        assert job.upstream_task_id
        time.sleep(max(0.0, 3.0 - (time.time() - job.submitted_at.timestamp())))  # type: ignore[union-attr]
        ctx = mp.get_context("spawn")
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [
            ctx.Process(
                target=_race,
                args=(stack.env["DATABASE_URL"], stack.sim_url, job_id, job.upstream_task_id, barrier, results),
            )
            for _ in range(4)
        ]
        for p in procs:
            p.start()
        wins = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        final = stack.wait(job_id)
        assert final.status == "succeeded"
        assert len(final.result or []) == 1
        assert sum(wins) <= 1, f"{sum(wins)} finalizing claims won"


def test_warm_shutdown_mid_run_loses_nothing(private_stack: StackFactory) -> None:
    stack, _, _ = private_stack(**CHAOS_ENV, SIM_DURATION_S="uniform:1:3")
    prompts = submit_many(stack, 40, "sigterm")
    time.sleep(1)
    assert stack.worker is not None
    stack.worker.kill_group(signal.SIGTERM)  # warm shutdown: finish or requeue in-flight work
    stack.worker.popen.wait(40)
    restart_worker(stack)
    wait_all(stack, list(prompts.values()), timeout=120)
    assert {stack.job(i).status for i in prompts.values()} == {"succeeded"}


def test_result_url_on_loopback_is_refused(private_stack: StackFactory) -> None:
    # The provider API itself is configured (trusted); the result URL it returns is not.
    stack, _, _ = private_stack(IMAGEGEN_ALLOW_PRIVATE_URLS="false")
    prompt = stack.prompt("result on loopback [[instant]]")
    job = stack.wait(stack.submit(prompt))
    assert (job.status, job.error_kind) == ("failed", "upstream_unavailable")
    assert (job.error_message or "").startswith("result file refused: ")
