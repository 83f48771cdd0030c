"""Upstream webhooks: verifying ``POST /webhooks/{provider}`` and turning it into a forced poll.

The callback URL we give a provider carries a per-job token, ``<job id>.<HMAC(key, job id)>``, so the
token is verified before anything is looked up. When ``APIDOT_WEBHOOK_SECRET`` is set, the provider's
signature (base64 HMAC-SHA256 over ``"{task_id}.{timestamp}"``, 300 s tolerance) is verified too. The
body is never trusted: an accepted webhook only schedules a forced poll, which re-fetches the status
and drives the same lifecycle transition a poll would, so duplicate deliveries are harmless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from config.settings import Settings
from imagegen.errors import WebhookRejected
from imagegen.ids import is_job_id
from imagegen.messages import Step, poll_step
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.transitions import JobStatus
from imagegen.timing.polls import calls_back


@dataclass(frozen=True)
class WebhookAccepted:
    """The webhook matched a job; ``step`` is the forced poll to publish (None: nothing to do)."""

    job_id: str
    step: Step | None


def _mac(key: bytes, job_id: str) -> str:
    digest = hmac.new(key, job_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def callback_token(key: bytes, job_id: str) -> str:
    """The token that authorizes callbacks about ``job_id`` (and only that job)."""
    return f"{job_id}.{_mac(key, job_id)}"


def callback_url(settings: Settings, provider: str, job_id: str) -> str | None:
    """Where the provider should POST the job's terminal state; None without a public URL, or for a
    provider that takes no callback (its jobs are then polled on the plain schedule)."""
    if not settings.imagegen_public_url or not calls_back(settings, provider):
        return None
    query = urlencode({"token": callback_token(settings.callback_token_key, job_id)})
    return f"{settings.imagegen_public_url.rstrip('/')}/webhooks/{provider}?{query}"


def job_id_from_token(key: bytes, token: str | None) -> str:
    """The job id a valid token names; ``WebhookRejected(401)`` otherwise (constant-time compare)."""
    job_id, _, mac = (token or "").partition(".")
    if not is_job_id(job_id) or not hmac.compare_digest(mac.encode(), _mac(key, job_id).encode()):
        raise WebhookRejected(401, "invalid callback token")
    return job_id


def verify_signature(
    secret: str, task_id: str, headers: Mapping[str, str], *, tolerance_s: float, now: float | None = None
) -> None:
    """Check ``X-Webhook-Signature`` / ``X-Webhook-Timestamp``; ``WebhookRejected(401)`` if bad or stale."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp, signature = lowered.get("x-webhook-timestamp", ""), lowered.get("x-webhook-signature", "")
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRejected(401, "missing or malformed X-Webhook-Timestamp") from None
    if abs((now if now is not None else time.time()) - sent) > tolerance_s:
        raise WebhookRejected(401, "stale webhook timestamp")
    expected = base64.b64encode(hmac.new(secret.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature.strip().encode(), expected):
        raise WebhookRejected(401, "bad webhook signature")


def task_id_from_body(body: bytes) -> str:
    """The upstream task id in a webhook body (``data.task_id`` or ``task_id``); 400 if absent."""
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejected(400, "webhook body is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    task_id = (data.get("task_id") if isinstance(data, dict) else None) or (
        payload.get("task_id") if isinstance(payload, dict) else None
    )
    if not isinstance(task_id, str) or not task_id or len(task_id) > 200:
        raise WebhookRejected(400, "webhook body names no task_id")
    return task_id


def check_token(rt: Runtime, provider: str, token: str | None) -> str:
    """The job id of a callback to a known provider with a valid token; ``WebhookRejected`` otherwise.

    Needs no body, so the HTTP route runs it before reading one.
    """
    if provider not in rt.providers:
        raise WebhookRejected(404, f"unknown provider {provider!r}")
    return job_id_from_token(rt.settings.callback_token_key, token)


def receive_upstream_webhook(
    rt: Runtime, provider: str, *, token: str | None, headers: Mapping[str, str], body: bytes
) -> WebhookAccepted:
    """Authenticate a provider callback and turn it into a forced poll of the job it names."""
    job_id = check_token(rt, provider, token)
    task_id = task_id_from_body(body)
    secret = rt.settings.apidot_webhook_secret.get_secret_value()
    if provider == "apidot" and secret:
        verify_signature(secret, task_id, headers, tolerance_s=rt.settings.imagegen_webhook_tolerance_s)
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    if job is None or job.provider != provider or job.upstream_task_id != task_id:
        raise WebhookRejected(404, "unknown task")
    if job.status != JobStatus.RUNNING:
        return WebhookAccepted(job_id, None)  # already finalized (a duplicate delivery) or not ours to poll
    return WebhookAccepted(job_id, poll_step(job_id, force=True))
