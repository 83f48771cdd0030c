"""Outbound webhook delivery, PoYo/APIDot style.

A single scheduler thread wakes at each task's finish time so a task nobody polls still
calls back; status calls and forced finishes also trigger delivery. ``SimState.claim_webhook``
makes sure each task is delivered once (plus ``[[dupwebhook:N]]`` duplicates). Each delivery
runs in its own daemon thread so a slow receiver never blocks the scheduler or the API.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import threading

import httpx

from .state import SimState
from .tasks import Task, status_body

MAX_RETRIES = 5
# The scheduler re-checks at least this often, so a fake clock or a forced finish is never missed.
_MAX_SLEEP_S = 0.5
_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


def sign(secret: str, task_id: str, timestamp: int) -> str:
    """``base64(HMAC-SHA256(secret, f"{task_id}.{timestamp}"))``: only id and time are signed."""
    mac = hmac.new(secret.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class WebhookDispatcher:
    """Schedules and delivers terminal-state callbacks for tasks that carry a ``callback_url``."""

    def __init__(self, state: SimState, secret: str, retry_base_s: float) -> None:
        self._state = state
        self._secret = secret
        self._retry_base_s = retry_base_s
        self._cond = threading.Condition()
        self._heap: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def schedule(self, task: Task) -> None:
        """Arrange a check at the task's finish time (no-op without callback or finish time)."""
        finish_at = task.finish_at
        if not task.callback_url or finish_at is None:
            return
        with self._cond:
            heapq.heappush(self._heap, (finish_at, task.task_id))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sim-webhook-scheduler", daemon=True)
                self._thread.start()
            self._cond.notify()

    def check(self, task_id: str) -> None:
        """Start delivery if the task is terminal and its webhook is still owed."""
        task = self._state.claim_webhook(task_id)
        if task is None or task.directives.webhook_count <= 0:
            return
        # Body frozen at the terminal moment; every duplicate carries the same body.
        body = json.dumps(status_body(task, self._state.now(), shape="A")).encode()
        threading.Thread(
            target=self._deliver_all, args=(task, body), name=f"sim-webhook-{task_id}", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop the scheduler and abandon pending retries (daemon threads end with the process)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            due: list[str] = []
            with self._cond:
                now = self._state.now()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[1])
                if not due:
                    wait = self._heap[0][0] - now if self._heap else _MAX_SLEEP_S
                    self._cond.wait(timeout=min(max(wait, 0.0), _MAX_SLEEP_S))
            for task_id in due:
                self.check(task_id)

    def _deliver_all(self, task: Task, body: bytes) -> None:
        with httpx.Client(timeout=_TIMEOUT, trust_env=False) as client:
            for _ in range(task.directives.webhook_count):
                if not self._deliver_one(client, task, body):
                    return

    def _deliver_one(self, client: httpx.Client, task: Task, body: bytes) -> bool:
        """One delivery with retries. False if the dispatcher was stopped meanwhile."""
        assert task.callback_url is not None
        for attempt in range(1 + MAX_RETRIES):
            timestamp = int(self._state.now())
            headers = {
                "Content-Type": "application/json",
                "X-Webhook-Timestamp": str(timestamp),
                "X-Webhook-Signature": sign(self._secret, task.task_id, timestamp),
            }
            try:
                status = client.post(task.callback_url, content=body, headers=headers).status_code
            except httpx.HTTPError:
                status = 0  # connection refused, timeout, ...: recorded as 0
            self._state.record(
                method="POST",
                path=task.callback_url,
                endpoint="webhook",
                status_code=status,
                task_id=task.task_id,
                prompt=task.prompt,
                directives=task.directives.tokens,
                code=task.success_code,
            )
            if 200 <= status < 300:
                return True
            if attempt < MAX_RETRIES and self._stop.wait(self._retry_base_s * 2**attempt):
                return False
        return True
