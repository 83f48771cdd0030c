"""Hostile messages sent by task name: none crashes a worker, and a rejected job id tells its sender why.

These run on a stack of their own (Redis, simulator, worker, beat), since a regression here kills the
worker that every other pipeline test shares.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imagegen import devstack
from tests.support.hostile import kombu_envelope, push_raw, still_serving, wait_row, worker_log
from tests.support.stack import Stack, revive_worker, stack_of_its_own

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def own_stack(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    metrics = {
        "IMAGEGEN_WORKER_METRICS_PORT": str(devstack.free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prometheus")),
    }
    with stack_of_its_own(database_factory(), tmp_path_factory, **metrics) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _live_worker(own_stack: Stack) -> None:
    """A test starts with a live worker even if the one before killed it (so each failure is its own)."""
    revive_worker(own_stack)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _send_foreign(
    stack: Stack, task: str, *, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
) -> None:
    """Send ``task`` by name from a plain Celery app in another process (no hooks of ours at publish)."""
    code = (
        "import json, sys; from celery import Celery; "
        "Celery(broker=sys.argv[1]).send_task(sys.argv[2], args=json.loads(sys.argv[3]), "
        "kwargs=json.loads(sys.argv[4]), queue='celery')"
    )
    argv = [sys.executable, "-c", code, stack.env["REDIS_URL"], task, json.dumps(args or []), json.dumps(kwargs or {})]
    subprocess.run(argv, check=True, timeout=30)


def test_deep_metadata_by_name_does_not_crash_the_worker(own_stack: Stack) -> None:
    stack = own_stack
    assert stack.worker is not None
    main_pid = stack.worker.pid
    before = len(worker_log(stack))
    job_id = str(uuid.uuid4())
    request = {"prompt": stack.prompt("poison [[instant]]"), "metadata": _nested(500)}
    _send_foreign(stack, "imagegen.enqueue", kwargs={"request": request, "job_id": job_id})
    # The next normal job on the same worker goes through, and the worker is the same process.
    ok = stack.wait(stack.submit(stack.prompt("after the poison [[instant]]")), timeout=60)
    assert ok.status == "succeeded", ok.error_message
    assert stack.worker.alive(), f"the worker died (logs: {stack.log_dir})"
    assert stack.worker.pid == main_pid
    job = wait_row(stack, job_id)
    assert job is not None, "the rejected job id was not recorded"
    assert (job.status, job.error_kind) == ("failed", "invalid_request")
    assert "metadata: nested too deeply" in (job.error_message or "")
    assert "RecursionError" not in worker_log(stack)[before:]


def _body(envelope: dict[str, Any], body: str) -> str:
    import base64

    envelope = {**envelope, "body": base64.b64encode(body.encode()).decode()}
    return json.dumps(envelope)


DEEP = '{"a":' * 5000 + "{}" + "}" * 5000


@pytest.mark.parametrize(
    "case",
    [
        "not-json",
        "envelope-list",
        "body-number",
        "body-short-list",
        "body-deep",
        "headers-deep",
        "args-dict",
        "bad-timelimit",
    ],
)
def test_malformed_raw_messages_do_not_crash_the_worker(own_stack: Stack, case: str) -> None:
    stack = own_stack
    assert stack.worker is not None
    main_pid = stack.worker.pid
    envelope = kombu_envelope(stack, "imagegen.submit")
    if case == "not-json":
        payload = "this is not a kombu message"
    elif case == "envelope-list":
        payload = "[1, 2, 3]"
    elif case == "body-number":
        payload = _body(envelope, "5")
    elif case == "body-short-list":
        payload = _body(envelope, "[1]")
    elif case == "body-deep":
        payload = _body(envelope, f"[[{DEEP}], {{}}, {{}}]")
    elif case == "bad-timelimit":
        payload = json.dumps({**envelope, "headers": {**envelope["headers"], "timelimit": ["soon", {}]}})
    elif case == "args-dict":
        payload = _body(envelope, '[{"job_id": 1}, [], {}]')
    else:
        text = json.dumps(envelope)
        payload = text.replace('"headers": {', f'"headers": {{"x-deep": {DEEP}, ', 1)
    push_raw(stack, payload)
    time.sleep(1)
    still_serving(stack, main_pid)


@pytest.mark.parametrize(
    "task", ["imagegen.submit", "imagegen.poll", "imagegen.notify", "imagegen.notify_batch", "imagegen.reconcile"]
)
def test_deep_arguments_and_headers_for_every_task(own_stack: Stack, task: str) -> None:
    stack = own_stack
    assert stack.worker is not None
    main_pid = stack.worker.pid
    stack.publisher._app.send_task(task, args=[_nested(500)], queue="celery")
    stack.publisher._app.send_task(task, args=[str(uuid.uuid4())], headers={"x-deep": _nested(500)}, queue="celery")
    still_serving(stack, main_pid)


def test_rejected_enqueue_is_recorded_listing_every_problem(own_stack: Stack) -> None:
    from imagegen.jobview import job_to_dict

    stack = own_stack
    job_id = str(uuid.uuid4())
    request = {"prompt": "", "size": "huge", "metadata": _nested(40), "n": 3, "provider": "nope\ud800"}
    stack.publisher._app.send_task(
        "imagegen.enqueue", kwargs={"request": request, "job_id": job_id, "extra": 1}, queue="celery"
    )
    job = wait_row(stack, job_id)
    assert job is not None
    assert (job.status, job.error_kind) == ("failed", "invalid_request")
    message = job.error_message or ""
    for problem in ("extra: unknown argument", "n: unknown field", "prompt:", "size:", "provider:"):
        assert problem in message, message
    # The stored request is only what any store and renderer can hold; the job renders as JSON.
    assert job.request == {"size": "huge"} and job.job_metadata is None and job.provider == "apidot"
    json.dumps(job_to_dict(job))
    cli = subprocess.run(
        [sys.executable, "-m", "imagegen.cli.main", "status", job_id, "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["error"]["kind"] == "invalid_request"


def test_rejection_never_overwrites_an_existing_job(own_stack: Stack) -> None:
    stack = own_stack
    job_id = str(uuid.uuid4())
    prompt = stack.prompt("first [[instant]]")
    stack.publisher._app.send_task("imagegen.enqueue", kwargs={"request": {"prompt": prompt}, "job_id": job_id})
    assert wait_row(stack, job_id) is not None
    assert stack.wait(job_id).status == "succeeded"
    stack.publisher._app.send_task("imagegen.enqueue", kwargs={"request": {"prompt": ""}, "job_id": job_id})
    stack.publisher._app.send_task("imagegen.enqueue", kwargs={"request": {"prompt": "ok"}, "job_id": job_id, "x": 1})
    time.sleep(2)
    job = stack.job(job_id)
    assert (job.status, job.error_kind, job.request["prompt"]) == ("succeeded", None, prompt)
    assert "rejected for existing job " + job_id in worker_log(stack)


def test_misspelled_arguments_are_rejections_not_type_errors(own_stack: Stack) -> None:
    stack = own_stack
    before = len(worker_log(stack))
    job_id = str(uuid.uuid4())
    send = stack.publisher._app.send_task
    send("imagegen.enqueue", kwargs={"request": {"prompt": stack.prompt("typo")}, "jobid": job_id})
    send("imagegen.enqueue", args=[{"prompt": "x"}, job_id, "third"])
    send("imagegen.submit", kwargs={"job": job_id})
    send("imagegen.poll", args=[job_id, False, "extra"])
    send("imagegen.poll", args=[{"job_id": job_id}])
    send("imagegen.notify")
    send("imagegen.notify_batch", args=["not-a-batch-id"])
    send("imagegen.notify_batch", kwargs={"batch": job_id})
    send("imagegen.reconcile", args=[1, 2], kwargs={"x": 1})
    ok = stack.wait(stack.submit(stack.prompt("after the typos [[instant]]")), timeout=60)
    assert ok.status == "succeeded"
    time.sleep(1)
    log = worker_log(stack)[before:]
    assert "jobid: unknown argument" in log
    assert "imagegen.notify_batch rejected: batch_id: must be a UUID string" in log
    assert "imagegen.notify_batch rejected: batch: unknown argument; batch_id: is required" in log
    assert "imagegen.reconcile rejected: args: at most 0 positional arguments (2 given); x: unknown argument" in log
    assert "TypeError" not in log and "Traceback" not in log
    # The positional form carries the job id: that rejection is recorded (the misspelled one cannot be).
    job = wait_row(stack, job_id)
    assert job is not None and "args: at most 2 positional arguments (3 given)" in (job.error_message or "")


def test_cli_refuses_deep_json_in_one_line(own_stack: Stack, tmp_path: Any) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "imagegen.cli.main", *args]
        return subprocess.run(argv, env=own_stack.env, capture_output=True, text=True, timeout=60)

    for levels in (40, 500, 15_000):  # an argument holds at most 128 KiB
        deep = '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)
        done = cli("submit", "--prompt", "x", "--metadata", deep)
        assert done.returncode == 2, done.stderr[-300:]
        assert done.stderr == "error: metadata: nested too deeply\n"
        lines = tmp_path / f"batch-{levels}.jsonl"
        lines.write_text('{"prompt": "ok"}\n{"prompt": "x", "metadata": ' + deep + "}\n", encoding="utf-8")
        done = cli("batch", str(lines))
        assert done.returncode == 2
        assert done.stderr.splitlines()[0] == "line 2: metadata: nested too deeply", done.stderr[-300:]
        assert "Traceback" not in done.stderr


def _worker_metric(stack: Stack, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    port = stack.env["IMAGEGEN_WORKER_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_messages_for_jobs_this_database_lacks_are_logged_and_counted(own_stack: Stack) -> None:
    stack = own_stack
    name = "imagegen_unknown_job_messages_total"
    before = {t: _worker_metric(stack, name, task=t) for t in ("imagegen.submit", "imagegen.poll")}
    foreign = [str(uuid.uuid4()), str(uuid.uuid4())]
    # As another deployment on the same Redis would send them.
    stack.publisher._app.send_task("imagegen.submit", args=[foreign[0]], queue="interactive")
    stack.publisher._app.send_task("imagegen.poll", args=[foreign[1]], kwargs={"force": True}, queue="poll")
    devstack.wait_until(
        lambda: all(f"no job {i} in this database" in worker_log(stack) for i in foreign), timeout=30, what="warnings"
    )
    lines = [line for line in worker_log(stack).splitlines() if "in this database" in line]
    assert any("WARNING" in line and foreign[0] in line and "imagegen.submit" in line for line in lines)
    assert any("WARNING" in line and foreign[1] in line and "imagegen.poll" in line for line in lines)
    for task in ("imagegen.submit", "imagegen.poll"):
        assert _worker_metric(stack, name, task=task) == before[task] + 1
