"""Chaos: kill workers, flush and restart Redis while jobs run; nothing is lost, nothing paid twice.

Run alone with ``make test-chaos`` (``pytest -m chaos``). Figures are printed (``-s`` to see them).
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
import redis

from imagegen import devstack
from tests.support.chaos import CHAOS_ENV, restart_worker, submit_many, wait_all
from tests.support.stack import Stack, StackFactory

pytestmark = pytest.mark.chaos


def _duplicate_submits(stack: Stack, prompts: dict[str, str]) -> int:
    import httpx

    rows = httpx.get(f"{stack.sim_url}/_sim/requests", params={"endpoint": "submit"}, timeout=30).json()
    accepted = Counter(r["prompt"] for r in rows if r["endpoint"] == "submit" and r["status_code"] == 200)
    return sum(max(0, accepted[p] - 1) for p in prompts)


def test_sigkill_worker_three_times_loses_nothing(private_stack: StackFactory) -> None:
    stack, _, _ = private_stack(**CHAOS_ENV, SIM_DURATION_S="uniform:2:10")
    prompts = submit_many(stack, 200, "kill-test")
    ids = list(prompts.values())
    begin = time.monotonic()
    kills = 3
    for pause in (1.0, 3.0, 4.0):  # the first kill lands while submits are still in flight
        time.sleep(pause)
        restart_worker(stack)
    last_kill = time.monotonic()
    wait_all(stack, ids, timeout=240)
    recovered = time.monotonic() - last_kill
    jobs = [stack.job(i) for i in ids]
    statuses = Counter(j.status for j in jobs)
    duplicates = _duplicate_submits(stack, prompts)
    print(
        f"\n[chaos sigkill] jobs=200 kills={kills} statuses={dict(statuses)} duplicate_submits={duplicates} "
        f"total={time.monotonic() - begin:.1f}s after_last_kill={recovered:.1f}s"
    )
    assert statuses == {"succeeded": 200}
    assert all(len(j.result or []) == 1 for j in jobs), "a job has two results"
    assert duplicates <= kills * 2, "more duplicate submits than kills x submit concurrency"


def test_flushall_with_worker_restart_loses_nothing(private_stack: StackFactory) -> None:
    stack, _, redis_url = private_stack(**CHAOS_ENV, SIM_DURATION_S="uniform:3:6")
    prompts = submit_many(stack, 50, "flush-test")
    ids = list(prompts.values())
    time.sleep(2)  # submitted and running, polls in flight
    redis.Redis.from_url(redis_url).flushall()
    restart_worker(stack)  # nothing survives in its memory either
    flushed = time.monotonic()
    wait_all(stack, ids, timeout=120)
    jobs = [stack.job(i) for i in ids]
    print(
        f"\n[chaos flushall] jobs=50 statuses={dict(Counter(j.status for j in jobs))} "
        f"recovered_in={time.monotonic() - flushed:.1f}s duplicate_submits={_duplicate_submits(stack, prompts)}"
    )
    assert all(j.status == "succeeded" for j in jobs)


def test_redis_restart_workers_reconnect(private_stack: StackFactory) -> None:
    stack, redis_proc, redis_url = private_stack(**CHAOS_ENV, SIM_DURATION_S="uniform:2:5")
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    prompts = submit_many(stack, 30, "redis-restart")
    ids = list(prompts.values())
    time.sleep(2)
    redis_proc.kill_group(signal.SIGKILL)
    redis_proc.popen.wait(10)
    time.sleep(2)
    new_proc, _ = devstack.start_redis(port)
    stack.processes.insert(0, new_proc)  # stopped with the stack
    restarted = time.monotonic()
    wait_all(stack, ids, timeout=120)
    jobs = [stack.job(i) for i in ids]
    print(
        f"\n[chaos redis restart] jobs=30 statuses={dict(Counter(j.status for j in jobs))} "
        f"recovered_in={time.monotonic() - restarted:.1f}s"
    )
    assert all(j.status == "succeeded" for j in jobs)
    # The same worker process (not a new one) is still consuming after the reconnect.
    assert stack.worker is not None and stack.worker.alive()
    after = stack.submit(stack.prompt("after reconnect [[instant]]"))
    assert stack.wait(after, timeout=60).status == "succeeded"


@pytest.mark.parametrize("policy", ["at_least_once", "at_most_once"])
def test_kill_inside_the_submit_window(private_stack: StackFactory, policy: str) -> None:
    """The one double-submit window (worker dies between the POST and recording its answer), measured.

    Every submit hangs 1.5 s upstream (the task is created at once), so a kill at 0.7 s lands inside the
    window for each busy child: at_least_once resubmits them (duplicates, bounded by concurrency);
    at_most_once fails them with submit_outcome_unknown instead (no duplicates).
    """
    stack, _, _ = private_stack(**CHAOS_ENV, IMAGEGEN_SUBMIT_POLICY=policy, SIM_DURATION_S="0.5")
    prompts = {stack.prompt(f"window {i} [[hangx1:1.5]]"): "" for i in range(6)}
    for prompt in prompts:
        prompts[prompt] = stack.submit(prompt)
    time.sleep(0.7)
    restart_worker(stack)
    killed = time.monotonic()
    wait_all(stack, list(prompts.values()), timeout=180)
    jobs = [stack.job(i) for i in prompts.values()]
    statuses = Counter(j.status for j in jobs)
    kinds = Counter(j.error_kind for j in jobs if j.error_kind)
    duplicates = _duplicate_submits(stack, prompts)
    print(
        f"\n[chaos submit window {policy}] jobs=6 concurrency=2 statuses={dict(statuses)} kinds={dict(kinds)} "
        f"duplicate_submits={duplicates} settled_in={time.monotonic() - killed:.1f}s"
    )
    if policy == "at_least_once":
        assert statuses == {"succeeded": 6}
        assert 1 <= duplicates <= 2, "the kill should land inside at most `concurrency` submits"
    else:
        assert duplicates == 0
        assert 1 <= kinds["submit_outcome_unknown"] <= 2
        assert statuses["succeeded"] + statuses["failed"] == 6
