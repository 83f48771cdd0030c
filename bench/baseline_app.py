"""Bare Celery for the baselines: the same broker settings as ours, and nothing else.

``celery -A bench.baseline_app worker`` consumes
- ``bench.touch(job_id, step)``: one UPDATE of the same ``jobs`` table our pipeline uses per message (the
  minimum any durable job queue must do; the throughput target's baseline);
- ``bench.naive_submit``/``bench.naive_poll``: the hand-written loop our users are tired of: the same three
  upstream calls as ours (submit, status, download) and one UPDATE per step, without leases,
  compare-and-set transitions, an attempt log, limits, retries or error classification.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import sqlalchemy as sa
from celery import Celery

from config.celery import celery_config
from config.settings import get_settings
from imagegen.providers.apidot import parse_status
from imagegen.store.db import make_engine

settings = get_settings()
app = Celery("bench-baseline")
app.conf.update({k: v for k, v in celery_config(settings).items() if k != "beat_schedule"})
if os.environ.get("BENCH_NAIVE_ETA"):
    # The scale baseline: Celery's default, every countdown message held in worker memory.
    app.conf.worker_eta_task_limit = None
_engine: tuple[int, sa.Engine] | None = None


def engine() -> sa.Engine:
    """One engine per forked child."""
    global _engine
    if _engine is None or _engine[0] != os.getpid():
        _engine = (os.getpid(), make_engine(settings.effective_database_url))
    return _engine[1]


_http: tuple[int, httpx.Client] | None = None


def http() -> httpx.Client:
    """One HTTP client (keep-alive pool) per forked child."""
    global _http
    if _http is None or _http[0] != os.getpid():
        _http = (os.getpid(), httpx.Client(timeout=30))
    return _http[1]


def _update(job_id: str, **values: str) -> None:
    sets = "".join(f", {name} = :{name}" for name in values)
    with engine().begin() as conn:
        conn.execute(sa.text(f"UPDATE jobs SET polls = polls + 1{sets} WHERE id = :id"), {"id": job_id, **values})


@app.task(name="bench.naive_submit", ignore_result=True)
def naive_submit(job_id: str) -> None:
    """POST the job, save the upstream task id, queue the poll."""
    base, key = os.environ["APIDOT_BASE_URL"], os.environ["APIDOT_API_KEY"]
    body = {"model": "gpt-image-2", "input": {"prompt": f"naive {job_id}"}}
    answer = http().post(f"{base}/api/generate/submit", json=body, headers={"Authorization": f"Bearer {key}"})
    task_id = answer.json()["data"]["task_id"]
    _update(job_id, upstream_task_id=task_id)
    naive_poll.apply_async((job_id, task_id), queue="poll")


@app.task(name="bench.naive_poll", ignore_result=True)
def naive_poll(job_id: str, task_id: str) -> None:
    """GET the status (done at once in this benchmark), download the image to a file, mark the job done."""
    base, key = os.environ["APIDOT_BASE_URL"], os.environ["APIDOT_API_KEY"]
    answer = http().get(f"{base}/api/generate/status/{task_id}", headers={"Authorization": f"Bearer {key}"})
    url = parse_status(answer.json()).file_urls[0]
    path = Path(os.environ["IMAGEGEN_HOME"]) / "naive" / f"{job_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(http().get(url).content)
    _update(job_id, status="succeeded")


@app.task(name="bench.touch", ignore_result=True)
def touch(job_id: str, step: int) -> None:
    """One DB write; the first step publishes the second (like submit → poll)."""
    with engine().begin() as conn:
        conn.execute(
            sa.text("UPDATE jobs SET polls = polls + 1, updated_at = updated_at WHERE id = :id"), {"id": job_id}
        )
    if step == 0:
        touch.apply_async((job_id, 1), queue="poll")
