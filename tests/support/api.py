"""What the API tier's tests share: constants, a fake webhook core with the inbound contract, and row
counts (fixtures built on these live in tests/api/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from imagegen.errors import WebhookRejected
from imagegen.messages import poll_step
from imagegen.runtime import Runtime
from imagegen.store.models import Job
from imagegen.webhooks.inbound import WebhookAccepted

#: Nothing listens on port 1: the broker is unreachable unless a test starts a Redis.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
GOOD_TOKEN = "good-token"
FAKE_JOB_ID = "00000000-0000-4000-8000-000000000001"


class FakeWebhookCore:
    """Follows the contract of ``imagegen.webhooks.inbound.receive_upstream_webhook`` without a job behind it.

    ``apidot`` is the only known provider; ``?token=good-token`` is the only valid token; a body
    ``{"task_id": "dup"}`` is a duplicate delivery (accepted, nothing to publish).
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.token_checks = 0

    def check_token(self, rt: Runtime, provider: str, token: str | None) -> str:
        """The pre-body check: the same provider and token rules, before any byte of the body is read."""
        self.token_checks += 1
        if provider != "apidot":
            raise WebhookRejected(404, f"unknown provider {provider!r}")
        if token != GOOD_TOKEN:
            raise WebhookRejected(401, "invalid callback token")
        return FAKE_JOB_ID

    def __call__(
        self, rt: Runtime, provider: str, *, token: str | None, headers: Mapping[str, str], body: bytes
    ) -> WebhookAccepted:
        self.calls.append({"provider": provider, "token": token, "headers": dict(headers), "body": body})
        if provider != "apidot":
            raise WebhookRejected(404, f"unknown provider {provider!r}")
        if token != GOOD_TOKEN:
            raise WebhookRejected(401, "invalid callback token")
        if body == b'{"task_id": "dup"}':
            return WebhookAccepted(FAKE_JOB_ID, None)
        return WebhookAccepted(FAKE_JOB_ID, poll_step(FAKE_JOB_ID, force=True))


ClientFactory = Callable[..., TestClient]


def count_jobs(rt: Runtime) -> int:
    """Rows in the jobs table (to prove a rejected request wrote nothing)."""
    with rt.session() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(Job)) or 0)
