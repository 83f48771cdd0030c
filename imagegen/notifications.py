"""Caller notifications: one signed POST to a request's ``callback_url`` when its job ends.

Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id`` (stable across retries, so the
receiver can deduplicate), ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`` keyed with the base64 part of ``IMAGEGEN_WEBHOOK_SECRET`` (``whsec_…``).
The body is the job JSON plus ``"type": "job.finished"``. Delivery state lives on the job row
(``notify_status``: pending → delivered | failed) and every attempt is logged in ``deliveries``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from imagegen.backoff import compute_backoff
from imagegen.errors import ImagegenError
from imagegen.fetch import FetchPolicy, post_json
from imagegen.jobview import job_to_dict
from imagegen.lifecycle import TERMINAL
from imagegen.runtime import Runtime
from imagegen.steps import Step, notify_step
from imagegen.store import repo
from imagegen.store.models import Delivery, Job
from imagegen.timers import schedule

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for ``body`` (secret in ``whsec_<base64>`` form)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers_for(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """Standard Webhooks headers (unsigned when no secret is configured)."""
    timestamp = int(now if now is not None else time.time())
    out = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secret:
        out["webhook-signature"] = sign(secret, msg_id, timestamp, body)
    return out


def claim(rt: Runtime, job_id: str) -> Step | None:
    """If the job ended and wants a notification that nobody claimed yet, claim it (CAS) and say so."""
    due = rt.now() + timedelta(seconds=rt.settings.imagegen_dispatch_grace_s)
    with rt.session() as s:
        won = s.execute(
            sa.update(Job)
            .where(
                col(Job.id) == job_id,
                col(Job.callback_url).is_not(None),
                col(Job.notify_status).is_(None),
                col(Job.status).in_([t.value for t in TERMINAL]),
            )
            .values(notify_status=PENDING, notify_next_at=due)
        )
    return notify_step(job_id) if int(getattr(won, "rowcount", 0)) == 1 else None


def claim_due(rt: Runtime, now: datetime, limit: int) -> list[Step]:
    """Reconciler: claim every ended job still owed a notification, and re-send lost pending ones."""
    grace = now + timedelta(seconds=rt.settings.imagegen_dispatch_grace_s)
    ended = [t.value for t in TERMINAL]
    with rt.session() as s:
        fresh = (
            s.execute(
                sa.update(Job)
                .where(col(Job.callback_url).is_not(None), col(Job.notify_status).is_(None), col(Job.status).in_(ended))
                .values(notify_status=PENDING, notify_next_at=grace)
                .returning(col(Job.id))
            )
            .scalars()
            .all()
        )
        lost = (
            s.execute(
                sa.update(Job)
                .where(col(Job.notify_status) == PENDING, col(Job.notify_next_at) < now)
                .values(notify_next_at=grace)
                .returning(col(Job.id))
            )
            .scalars()
            .all()
        )
    return [notify_step(job_id) for job_id in [*fresh, *lost][:limit]]


def deliver(rt: Runtime, job_id: str) -> Step | None:
    """One delivery attempt; returns the retry message when it failed and attempts remain."""
    settings = rt.settings
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    if job is None or job.notify_status != PENDING or not job.callback_url:
        return None
    body = json.dumps({**job_to_dict(job), "type": "job.finished"}, default=str).encode()
    headers = headers_for(settings.imagegen_webhook_secret.get_secret_value(), f"msg_{job.id}", body)
    policy = FetchPolicy(allow_private=settings.imagegen_allow_private_urls, max_bytes=64 * 1024, content_types=())
    attempt = job.notify_attempts + 1
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        status = post_json(job.callback_url, body, headers, policy, client=rt.fetch_client).status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except ImagegenError as exc:  # UnsafeURL, FetchFailed: never a traceback out of the task
        error = f"{type(exc).__name__}: {exc}"[:500]
    with rt.session() as s:
        s.add(
            Delivery(
                job_id=job_id,
                attempt=attempt,
                http_status=status,
                error=error,
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        )
        if error is None:
            s.execute(
                sa.update(Job)
                .where(col(Job.id) == job_id)
                .values(notify_status=DELIVERED, notify_attempts=attempt, notify_next_at=None)
            )
            return None
        if attempt >= settings.imagegen_notify_max_attempts:
            s.execute(
                sa.update(Job)
                .where(col(Job.id) == job_id)
                .values(notify_status=FAILED, notify_attempts=attempt, notify_next_at=None)
            )
            return None
        delay = compute_backoff(
            attempt,
            base=settings.imagegen_backoff_base_s * 2,
            cap=settings.imagegen_eta_max_s,
            rng=rt.rng,
            jitter=False,
        )
        timer = schedule(rt.now(), delay, settings)
        s.execute(
            sa.update(Job)
            .where(col(Job.id) == job_id)
            .values(notify_attempts=attempt, notify_next_at=timer.values["dispatch_until"])
        )
    return notify_step(job_id, delay)


def deliveries(rt: Runtime, job_id: str) -> list[Delivery]:
    """The delivery log of one job, oldest first."""
    with rt.session() as s:
        return list(s.scalars(sa.select(Delivery).where(col(Delivery.job_id) == job_id).order_by(col(Delivery.id))))
