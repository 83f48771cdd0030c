"""Shared in-memory state of the simulator: tasks, fault counters, global config, request record.

One ``SimState`` serves every simulated provider. Handlers run on the event loop while
webhook threads also read and write, so every mutation happens under one lock.
"""

from __future__ import annotations

import random
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

from .settings import SimSettings
from .tasks import Shape, Task, task_view

Clock = Callable[[], float]
Endpoint = Literal["submit", "status", "file", "webhook", "secret"]

_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class SimConfig:
    """Global knobs set through ``/_sim/config``."""

    submit_fault: int | None = None
    duration_s: float | None = None
    shape: Shape = "A"
    #: Accepted submits per second per account, like a real key's tier (None: unlimited); excess gets 429.
    submit_rate: float | None = None
    #: Whether a 429 from ``submit_rate`` carries ``Retry-After: 1`` (APIDot promises none).
    submit_rate_retry_after: bool = True

    def as_dict(self) -> dict[str, object]:
        """JSON form (the fault as a string, as it is posted)."""
        fault = None if self.submit_fault is None else str(self.submit_fault)
        return {
            "submit_fault": fault,
            "duration_s": self.duration_s,
            "shape": self.shape,
            "submit_rate": self.submit_rate,
            "submit_rate_retry_after": self.submit_rate_retry_after,
        }


@dataclass(frozen=True)
class RequestRecord:
    """One received request (or one outbound webhook delivery attempt)."""

    seq: int
    time: float
    provider: str
    method: str
    path: str
    endpoint: Endpoint
    task_id: str | None
    prompt: str | None
    directives: tuple[str, ...]
    status_code: int
    code: int | None
    retry_after: str | None
    # Optional facts some providers add (OpenAI-shaped fakes); left out of the JSON form when unset,
    # so APIDot records keep their original shape.
    error_code: str | None = None  # the error body's string ``code`` (``rate_limit_exceeded``...)
    image_count: int | None = None  # reference images uploaded (OpenAI edits)
    image_bytes: tuple[int, ...] | None = None  # their sizes, in arrival order
    idempotency_key: str | None = None  # the request's Idempotency-Key header
    image_urls: tuple[str, ...] | None = None  # reference image URLs of an APIDot submit

    def as_dict(self) -> dict[str, object]:
        """JSON form for ``/_sim/requests``."""
        out = asdict(self)
        out["directives"] = list(self.directives)
        for key in _OPTIONAL_FIELDS:
            if out[key] is None:
                del out[key]
        if self.image_bytes is not None:
            out["image_bytes"] = list(self.image_bytes)
        if self.image_urls is not None:
            out["image_urls"] = list(self.image_urls)
        return out


_OPTIONAL_FIELDS = ("error_code", "image_count", "image_bytes", "idempotency_key", "image_urls")


@dataclass
class SimState:
    """Everything the simulator remembers. Create one per app."""

    settings: SimSettings
    clock: Clock = time.time
    rng: random.Random = field(default_factory=random.Random)
    config: SimConfig = field(default_factory=SimConfig)
    lock: threading.Lock = field(default_factory=threading.Lock)
    tasks: dict[str, Task] = field(default_factory=dict)
    submit_calls: dict[str, int] = field(default_factory=dict)
    records: list[RequestRecord] = field(default_factory=list)
    _seq: int = 0
    _next_submit_at: float = 0.0

    def now(self) -> float:
        """Current time from the injected clock (unix seconds)."""
        return self.clock()

    def new_task_id(self) -> str:
        """An APIDot-like id: ``task-unified-<unix>-<8 lowercase alnum>``."""
        suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
        return f"task-unified-{int(self.now())}-{suffix}"

    def sample_duration(self, directive_s: float | None) -> float:
        """Directive beats global config beats the settings' distribution."""
        if directive_s is not None:
            return directive_s
        with self.lock:
            if self.config.duration_s is not None:
                return self.config.duration_s
            return self.settings.duration.sample(self.rng)

    def submit_allowed(self) -> bool:
        """ "R submits per second", as APIs usually mean it: a token bucket refilled at R/s holding R tokens
        (a one-second window's worth); whether one more submit fits now."""
        with self.lock:
            rate = self.config.submit_rate
            if rate is None:
                return True
            now = self.now()
            interval, capacity = 1.0 / rate, max(1.0, rate)
            # GCRA form of the bucket: the theoretical arrival time may run `capacity - 1` intervals ahead.
            tat = max(self._next_submit_at, now)
            if tat - now > (capacity - 1) * interval + 1e-9:
                return False
            self._next_submit_at = tat + interval
            return True

    def next_submit_call(self, prompt: str) -> int:
        """0-based index of this submit among all submits with the same prompt text."""
        with self.lock:
            index = self.submit_calls.get(prompt, 0)
            self.submit_calls[prompt] = index + 1
            return index

    def next_poll_call(self, task: Task) -> int:
        """0-based index of this status call on ``task``."""
        with self.lock:
            index = task.poll_calls
            task.poll_calls += 1
            return index

    def add_task(self, task: Task) -> None:
        """Store a newly accepted task."""
        with self.lock:
            self.tasks[task.task_id] = task

    def get_task(self, task_id: str) -> Task | None:
        """The task with this id, if any."""
        with self.lock:
            return self.tasks.get(task_id)

    def force_finish(self, task_id: str) -> Task | None:
        """Make a task terminal now (its outcome directive still decides finished vs failed)."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is not None and not task_view(task, self.now()).terminal:
                task.forced_at = self.now()
            return task

    def claim_webhook(self, task_id: str) -> Task | None:
        """Return the task exactly once, when it is terminal and owes a webhook; else None."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None or task.webhook_claimed or not task.callback_url:
                return None
            if not task_view(task, self.now()).terminal:
                return None
            task.webhook_claimed = True
            return task

    def record(
        self,
        *,
        method: str,
        path: str,
        endpoint: Endpoint,
        status_code: int,
        provider: str = "apidot",
        task_id: str | None = None,
        prompt: str | None = None,
        directives: tuple[str, ...] = (),
        code: int | None = None,
        retry_after: str | None = None,
        error_code: str | None = None,
        image_bytes: tuple[int, ...] | None = None,
        idempotency_key: str | None = None,
        image_urls: tuple[str, ...] | None = None,
    ) -> RequestRecord:
        """Append one entry to the request record."""
        with self.lock:
            self._seq += 1
            entry = RequestRecord(
                seq=self._seq,
                time=self.now(),
                provider=provider,
                method=method,
                path=path,
                endpoint=endpoint,
                task_id=task_id,
                prompt=prompt,
                directives=directives,
                status_code=status_code,
                code=code,
                retry_after=retry_after,
                error_code=error_code,
                image_count=None if image_bytes is None else len(image_bytes),
                image_bytes=image_bytes,
                idempotency_key=idempotency_key,
                image_urls=image_urls,
            )
            self.records.append(entry)
            return entry

    def query_records(
        self,
        prompt_contains: str | None = None,
        task_id: str | None = None,
        endpoint: str | None = None,
    ) -> list[RequestRecord]:
        """Records in arrival order, optionally filtered."""
        with self.lock:
            found = list(self.records)
        if prompt_contains is not None:
            found = [r for r in found if r.prompt is not None and prompt_contains in r.prompt]
        if task_id is not None:
            found = [r for r in found if r.task_id == task_id]
        if endpoint is not None:
            found = [r for r in found if r.endpoint == endpoint]
        return found

    def clear_records(self) -> None:
        """Forget the record (tasks and counters stay)."""
        with self.lock:
            self.records.clear()

    def reset(self) -> None:
        """Forget everything: tasks, fault counters, record and global config."""
        with self.lock:
            self.tasks.clear()
            self.submit_calls.clear()
            self.records.clear()
            self.config = SimConfig()
