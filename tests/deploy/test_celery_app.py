"""What ``celery -A worker`` finds: the Celery app as ``worker.app``, with exactly the ``imagegen.*`` tasks
producers, Flower and the compose file name (renaming one strands every message already queued)."""

from __future__ import annotations

from celery import Celery
from celery.app.utils import find_app

import worker

TASKS = {
    "imagegen.enqueue",
    "imagegen.finalize",
    "imagegen.notify",
    "imagegen.notify_batch",
    "imagegen.poll",
    "imagegen.reconcile",
    "imagegen.submit",
}


def test_worker_exposes_the_celery_app() -> None:
    assert isinstance(worker.app, Celery)
    assert worker.__all__ == ["app"]
    assert find_app("worker") is worker.app  # the lookup behind ``celery -A worker``


def test_registered_task_names_are_pinned() -> None:
    worker.app.loader.import_default_modules()  # the ``include`` modules, as a worker loads them at start
    assert {name for name in worker.app.tasks if name.startswith("imagegen.")} == TASKS
