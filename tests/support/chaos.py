"""Chaos helpers shared by the system tier's recovery and safety tests: recovery timings, many jobs at
once, waiting for all of them, and a worker killed and replaced."""

from __future__ import annotations

import signal
import time
from collections import Counter

from imagegen import devstack
from tests.support.stack import SETTLED, Stack

#: Recovery timings for chaos: a lost message is presumed lost after 3 s, a dead submit after 65 s (a
#: lease must outlive the submit task's 60 s hard time limit, which Settings enforce).
CHAOS_ENV = {
    "IMAGEGEN_DISPATCH_GRACE_S": "3",
    "IMAGEGEN_SUBMIT_LEASE_S": "65",
    "IMAGEGEN_EXPECTED_DURATION_S": "4",
    "IMAGEGEN_POLL_MIN_S": "0.5",
    "IMAGEGEN_POLL_CAP_S": "2",
}


def submit_many(stack: Stack, n: int, tag: str) -> dict[str, str]:
    prompts = {stack.prompt(f"{tag} {i}"): "" for i in range(n)}
    for prompt in prompts:
        prompts[prompt] = stack.submit(prompt, priority="batch")
    return prompts


def wait_all(stack: Stack, ids: list[str], timeout: float) -> float:
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        with stack.rt.session() as s:
            from imagegen.store import repo

            statuses = [repo.get_job(s, i).status for i in ids]  # type: ignore[union-attr]
        if all(st in SETTLED for st in statuses):
            return time.monotonic() - start
        time.sleep(0.5)
    counts = Counter(statuses)
    raise AssertionError(f"not all jobs settled after {timeout}s: {dict(counts)} (logs: {stack.log_dir})")


def restart_worker(stack: Stack) -> None:
    assert stack.worker is not None
    if stack.worker.alive():
        stack.worker.kill_group(signal.SIGKILL)
        stack.worker.popen.wait(10)
    stack.processes.remove(stack.worker)
    stack.worker = devstack.start_worker(stack.env, concurrency=2, log_dir=stack.log_dir, name="worker")
    stack.processes.append(stack.worker)
