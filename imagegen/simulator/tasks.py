"""A simulated upstream task and its time-driven lifecycle.

The status is computed from the clock on every read (nothing ticks in the background),
so a task is always consistent with ``now`` however rarely it is polled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .directives import Directives

Shape = Literal["A", "B"]

# Fraction of the duration reported as "not_started" before "running".
NOT_STARTED_FRACTION = 0.1
NEVER_PROGRESS = 50

FAIL_MESSAGES = {
    "statusfail": "Generation failed: upstream model error",
    "safetyfail": "Image rejected by the safety system",
}


@dataclass
class Task:
    """One accepted submit. Mutable fields are changed only under the state lock."""

    task_id: str
    prompt: str
    model: str
    directives: Directives
    created_at: float
    duration_s: float
    shape: Shape
    base_url: str
    callback_url: str | None = None
    forced_at: float | None = None
    poll_calls: int = 0
    webhook_claimed: bool = False

    @property
    def created_time(self) -> str:
        """ISO 8601 without zone (UTC), like APIDot's ``created_time``."""
        dt = datetime.fromtimestamp(self.created_at, tz=UTC).replace(tzinfo=None)
        return dt.isoformat(timespec="seconds")

    @property
    def finish_at(self) -> float | None:
        """When the task turns terminal; None if it never does (unless forced)."""
        if self.forced_at is not None:
            return self.forced_at
        if self.directives.never:
            return None
        return self.created_at + self.duration_s

    @property
    def file_url(self) -> str:
        """Where the finished image is served."""
        return f"{self.base_url}/files/{self.task_id}.png"

    @property
    def success_code(self) -> int:
        """The ``code`` field of this task's success bodies (0 with ``[[code0]]``)."""
        return 0 if self.directives.code0 else 200


@dataclass(frozen=True)
class TaskView:
    """The task as seen at one instant."""

    status: str
    progress: int
    terminal: bool
    error_message: str | None
    files: tuple[dict[str, str], ...]


def task_view(task: Task, now: float) -> TaskView:
    """Compute the task's status, progress and result at ``now``."""
    finish_at = task.finish_at
    if finish_at is not None and now >= finish_at:
        if task.directives.outcome == "finished":
            files = ({"file_url": task.file_url, "file_type": "image"},)
            return TaskView("finished", 100, True, None, files)
        return TaskView("failed", 100, True, FAIL_MESSAGES[task.directives.outcome], ())
    elapsed = max(0.0, now - task.created_at)
    processing = task.directives.processing
    if elapsed < NOT_STARTED_FRACTION * task.duration_s:
        return TaskView("queued" if processing else "not_started", 0, False, None, ())
    if task.directives.never:
        progress = NEVER_PROGRESS
    else:
        progress = min(99, max(0, int(99 * elapsed / task.duration_s))) if task.duration_s > 0 else 99
    return TaskView("processing" if processing else "running", progress, False, None, ())


def status_body(task: Task, now: float, shape: Shape | None = None) -> dict[str, object]:
    """The status endpoint's JSON body (Shape A: ``data.files``; Shape B: ``data.output.files``)."""
    view = task_view(task, now)
    files = [dict(f) for f in view.files]
    label = task.directives.status_label if view.terminal else None
    data: dict[str, object] = {
        "task_id": task.task_id,
        "status": label or view.status,
        "progress": view.progress,
        "created_time": task.created_time,
    }
    if (shape or task.shape) == "B":
        data["output"] = {"files": files}
    else:
        data["files"] = files
    data["error_message"] = view.error_message
    return {"code": task.success_code, "data": data}
