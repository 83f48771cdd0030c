"""The ``imagegen.*`` tasks: thin wrappers; the logic is in ``imagegen.jobs`` and ``imagegen.webhooks``."""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from config.celery import finalize_limits
from config.limits import TIME_LIMITS
from config.settings import get_settings
from imagegen.byname import by_name, enqueue_message
from imagegen.constants import (
    FINALIZE_TASK,
    NOTIFY_BATCH_TASK,
    NOTIFY_TASK,
    POLL_TASK,
    RECONCILE_TASK,
    SUBMIT_TASK,
)
from imagegen.ids import is_job_id
from imagegen.jobs.finalize import finalize_interrupted, finalize_job
from imagegen.jobs.poll import poll_job
from imagegen.jobs.reconciler import reconcile as reconcile_jobs
from imagegen.jobs.submit import submit_job
from imagegen.messages import Step
from imagegen.producer import publish_submits
from imagegen.runtime import get_runtime
from imagegen.webhooks.batches import deliver as deliver_batch
from imagegen.webhooks.outbound import deliver
from worker.app import app
from worker.publisher import CeleryPublisher

log = logging.getLogger(__name__)
publisher = CeleryPublisher()


def _limits(name: str) -> dict[str, Any]:
    soft, hard = TIME_LIMITS[name]
    return {"name": name, "soft_time_limit": soft, "time_limit": hard, "ignore_result": True}


def _publish(steps: list[Step] | Step | None) -> None:
    for step in [steps] if isinstance(steps, Step) else steps or []:
        publisher.publish(step)


@app.task(**_limits("imagegen.enqueue"))
def enqueue(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """``imagegen.enqueue(request, job_id=None)``: validate, insert the job (with the caller's ``job_id``
    if given) and submit it. Any other message is a rejection, recorded under its ``job_id`` if it has one."""
    job, answer = enqueue_message(get_runtime(), args, kwargs)
    if job is not None:
        publish_submits(publisher, [job])
    return answer


@app.task(**_limits(SUBMIT_TASK))
@by_name
def submit(job_id: str) -> None:
    """Submit the job upstream (at most one POST per claim)."""
    if is_job_id(job_id):
        _publish(submit_job(get_runtime(), job_id))


@app.task(**_limits(POLL_TASK))
@by_name
def poll(job_id: str, force: bool = False) -> None:
    """Read the upstream task's status once (``force``: a webhook arrived, do not wait for the due time)."""
    if is_job_id(job_id):
        _publish(poll_job(get_runtime(), job_id, force=bool(force)))


_FINALIZE_SOFT, _FINALIZE_HARD = finalize_limits(get_settings())


@app.task(name=FINALIZE_TASK, soft_time_limit=_FINALIZE_SOFT, time_limit=_FINALIZE_HARD, ignore_result=True)
@by_name
def finalize(job_id: str) -> None:
    """Download a finished task's result files into our storage (time limits sized for the download)."""
    if not is_job_id(job_id):
        return
    rt = get_runtime()
    try:
        _publish(finalize_job(rt, job_id))
    except SoftTimeLimitExceeded:
        log.warning("imagegen.finalize %s hit its soft time limit; the download will be retried", job_id)
        _publish(finalize_interrupted(rt, job_id))


@app.task(**_limits(NOTIFY_TASK))
@by_name
def notify(job_id: str) -> None:
    """Tell the caller's ``callback_url`` that its job ended (one signed POST; retried with backoff)."""
    if is_job_id(job_id):
        _publish(deliver(get_runtime(), job_id))


@app.task(**_limits(NOTIFY_BATCH_TASK))
@by_name
def notify_batch(batch_id: str) -> None:
    """Tell a batch's ``callback_url`` that every job of the batch ended (one signed POST; retried with backoff)."""
    if is_job_id(batch_id):
        _publish(deliver_batch(get_runtime(), batch_id))


@app.task(**_limits(RECONCILE_TASK))
@by_name
def reconcile() -> dict[str, int]:
    """Expire, recover and release due work (on beat)."""
    report = reconcile_jobs(get_runtime())
    _publish(report.steps)
    return report.summary()
