"""Flower against a real pipeline: task names, redacted arguments, /metrics, auth and persistence.

Flower runs with the configuration the Docker image ships (the repository's ``flowerconfig.py``, which
the Dockerfile copies to ``/app/flowerconfig.py``) and, in the last test, with the exact flags of the
compose ``flower`` service.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from imagegen import devstack
from tests.support.stack import MARKER_API_KEY, Stack

pytestmark = pytest.mark.pipeline

ROOT = Path(__file__).resolve().parents[2]
PROMPT_MARKER = f"PROMPT-MARKER-{uuid.uuid4().hex}"
#: In the prompt of a message sent by another producer (unredacted at publish; Flower's API shows it).
FOREIGN_MARKER = f"FOREIGN-MARKER-{uuid.uuid4().hex}"


def flowerconfig_text() -> str:
    """The repository's flowerconfig.py, which the Dockerfile copies to /app/flowerconfig.py."""
    assert "COPY flowerconfig.py /app/flowerconfig.py" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = (ROOT / "flowerconfig.py").read_text(encoding="utf-8")
    assert "format_task" in text
    return text


def start_flower(stack: Stack, argv: list[str], env: dict[str, str], port: int, name: str) -> devstack.Process:
    """``celery -A worker flower …`` as a process, ready when /healthcheck answers."""
    proc = devstack.Process(
        name, devstack.celery_argv("flower", *argv), env={**stack.env, **env}, log_path=stack.log_dir / f"{name}.log"
    )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        devstack.wait_until(up, timeout=45, what=f"flower ({stack.log_dir / name}.log)")
    except BaseException:
        proc.stop()
        raise
    return proc


def tasks_of(base: str, job_id: str, auth: tuple[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Flower's /api/tasks entries whose arguments carry ``job_id``."""
    tasks = httpx.get(f"{base}/api/tasks", auth=auth, timeout=10).json()
    return {uid: t for uid, t in tasks.items() if job_id in str(t.get("args")) + str(t.get("kwargs"))}


def wait_for_tasks(base: str, job_id: str, names: set[str], auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """Wait until Flower has seen every task in ``names`` of the job succeed."""
    found: dict[str, Any] = {}

    def seen() -> bool:
        found.clear()
        found.update(tasks_of(base, job_id, auth))
        done = {t["name"] for t in found.values() if t.get("state") == "SUCCESS"}
        return names <= done

    devstack.wait_until(seen, timeout=30, what=f"flower seeing {names} for {job_id}", interval=0.5)
    return found


@pytest.fixture(scope="module")
def flower(ops_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Flower with the image's config file and an unauthenticated API, watching the ops stack."""
    conf = tmp_path_factory.mktemp("flower") / "flowerconfig.py"
    conf.write_text(flowerconfig_text(), encoding="utf-8")
    port = devstack.free_port()
    argv = [f"--port={port}", "--address=127.0.0.1", f"--conf={conf}"]
    proc = start_flower(ops_stack, argv, {"FLOWER_UNAUTHENTICATED_API": "true"}, port, "flower")
    base = f"http://127.0.0.1:{port}"
    try:
        # Events flow once Flower has seen a task: beat sends imagegen.reconcile every second.
        devstack.wait_until(
            lambda: any(t["name"] == "imagegen.reconcile" for t in httpx.get(f"{base}/api/tasks").json().values()),
            timeout=30,
            what="flower receiving task events",
            interval=0.5,
        )
        yield base
    finally:
        proc.stop()


def test_job_tasks_show_names_and_job_ids_only(ops_stack: Stack, flower: str) -> None:
    prompt = ops_stack.prompt(f"{PROMPT_MARKER} flower https://private.example/ref.png")
    job_id = ops_stack.submit(prompt, quality="low")
    assert ops_stack.wait(job_id).status == "succeeded"
    mine = wait_for_tasks(flower, job_id, {"imagegen.submit", "imagegen.poll", "imagegen.finalize"})
    assert {t["name"] for t in mine.values()} <= {"imagegen.submit", "imagegen.poll", "imagegen.finalize"}
    for task in mine.values():
        # "('<id>',)" from the redacted header, or "['<id>']" from the task-sent event, which Celery
        # builds before before_task_publish runs: either way the job id and nothing else.
        assert list(ast.literal_eval(task["args"])) == [job_id], task
        assert ast.literal_eval(task["kwargs"] or "{}") == {}, task
        info = httpx.get(f"{flower}/api/task/info/{task['uuid']}", timeout=10).json()
        assert info["name"] == task["name"] and info["args"] == task["args"]
    everything = httpx.get(f"{flower}/api/tasks", timeout=10).text
    assert MARKER_API_KEY not in everything and "sk-ops-marker" not in everything
    assert PROMPT_MARKER not in everything and "private.example" not in everything
    # The simulator did receive the key, so the search above looked for the right string.
    assert ops_stack.records(prompt, "submit")


def _metric_families(base: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    # Counter families are named without their _total suffix by the parser.
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def test_metrics_serve_prometheus_text(ops_stack: Stack, flower: str) -> None:
    job_id = ops_stack.submit(ops_stack.prompt("metrics"), quality="low")
    assert ops_stack.wait(job_id).status == "succeeded"
    wait_for_tasks(flower, job_id, {"imagegen.submit", "imagegen.poll"})
    families = _metric_families(flower)
    assert {"flower_events", "flower_task_runtime_seconds", "flower_worker_online"} <= set(families)
    event_tasks = {s.labels.get("task") for s in families["flower_events"].samples}
    assert {"imagegen.submit", "imagegen.poll", "imagegen.reconcile"} <= event_tasks
    runtimes = {s.labels.get("task") for s in families["flower_task_runtime_seconds"].samples}
    assert "imagegen.poll" in runtimes
    # Set by the worker's heartbeats (every 2 s), so it may take a moment after Flower starts.
    devstack.wait_until(
        lambda: any(s.value == 1 for s in _metric_families(flower)["flower_worker_online"].samples),
        timeout=20,
        what=f"flower_worker_online 1 ({_metric_families(flower)['flower_worker_online'].samples})",
        interval=0.5,
    )


def test_format_task_redacts_messages_from_other_producers(ops_stack: Stack, flower: str) -> None:
    # Another service sends imagegen.enqueue by name with a plain Celery app: no redaction at publish.
    job_id = str(uuid.uuid4())
    request = {"prompt": ops_stack.prompt(f"{FOREIGN_MARKER} foreign"), "quality": "low"}
    code = (
        "import json, sys; from celery import Celery; "
        "Celery(broker=sys.argv[1]).send_task('imagegen.enqueue', "
        "kwargs={'request': json.loads(sys.argv[2]), 'job_id': sys.argv[3]}, queue='celery')"
    )
    subprocess.run(
        [sys.executable, "-c", code, ops_stack.env["REDIS_URL"], json.dumps(request), job_id], check=True, timeout=30
    )
    devstack.wait_until(lambda: _exists(ops_stack, job_id), timeout=30, what="the job sent by name")
    assert ops_stack.wait(job_id).status == "succeeded"
    wait_for_tasks(flower, job_id, {"imagegen.enqueue", "imagegen.submit", "imagegen.poll"})
    # The task list of Flower's UI goes through format_task.
    page = httpx.get(
        f"{flower}/tasks/datatable",
        params={
            "draw": 1,
            "start": 0,
            "length": 1000,
            "search[value]": "",
            "order[0][column]": 0,
            "columns[0][data]": "received",
            "order[0][dir]": "desc",
        },
        timeout=10,
    )
    assert page.status_code == 200
    rows = [r for r in page.json()["data"] if job_id in str(r.get("kwargs"))]
    assert [r["name"] for r in rows] == ["imagegen.enqueue"]
    assert "<redacted object" in rows[0]["kwargs"]
    assert FOREIGN_MARKER not in page.text


def _exists(stack: Stack, job_id: str) -> bool:
    from imagegen.store import repo

    with stack.rt.session() as s:
        return repo.get_job(s, job_id) is not None


def test_compose_flower_flags_auth_and_persistence(ops_stack: Stack, tmp_path: Path) -> None:
    """The compose service's own command line: basic auth from FLOWER_BASIC_AUTH, state kept on disk."""
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]["flower"]
    argv = list(service["command"])
    assert argv[:4] == ["celery", "-A", "worker", "flower"]
    conf = tmp_path / "flowerconfig.py"
    conf.write_text(flowerconfig_text(), encoding="utf-8")
    port = devstack.free_port()
    local = {
        "/app/flowerconfig.py": str(conf),
        "/data/flower/": f"{tmp_path}/",
        "--port=5555": f"--port={port}",
    }
    flags = [_replace_all(a, local) for a in argv[4:]] + ["--address=127.0.0.1"]
    user, password = "ops", uuid.uuid4().hex
    env = {"FLOWER_BASIC_AUTH": f"{user}:{password}"}
    base = f"http://127.0.0.1:{port}"
    proc = start_flower(ops_stack, flags, env, port, "flower-compose")
    try:
        assert httpx.get(f"{base}/api/tasks", timeout=10).status_code == 401
        assert httpx.get(f"{base}/", timeout=10).status_code == 401
        assert httpx.get(f"{base}/api/tasks", auth=(user, "wrong"), timeout=10).status_code == 401
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 200  # exempt: keep it internal
        devstack.wait_until(
            lambda: httpx.get(f"{base}/api/workers", auth=(user, password), timeout=5).json() != {},
            timeout=30,
            what="flower seeing the worker",
            interval=0.5,
        )
        time.sleep(1.0)  # the event receiver is connected once workers answer; leave it a moment
        job_id = ops_stack.submit(ops_stack.prompt("persisted"), quality="low")
        assert ops_stack.wait(job_id).status == "succeeded"
        before = wait_for_tasks(base, job_id, {"imagegen.submit", "imagegen.poll"}, auth=(user, password))
    finally:
        proc.stop()  # SIGTERM: Flower saves its state on the way out
    assert list(tmp_path.glob("flower.db*")), "no state file written"
    proc = start_flower(ops_stack, flags, env, port, "flower-compose-restarted")
    try:
        after = tasks_of(base, job_id, auth=(user, password))
        assert set(before) <= set(after), "Flower lost the job's tasks across a restart"
    finally:
        proc.stop()


def _replace_all(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text
