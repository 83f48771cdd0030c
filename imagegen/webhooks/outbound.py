"""Caller notifications: one signed POST to a request's ``callback_url`` when its job ends.

Standard Webhooks (https://www.standardwebhooks.com), signed with its reference package
``standardwebhooks``: ``webhook-id`` (one per outcome: the same across delivery retries, so the
receiver can deduplicate, and a new one after ``imagegen retry`` ends the job again), ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with
``IMAGEGEN_WEBHOOK_SECRET`` (``whsec_…``). The body is the job JSON plus ``"type": "job.finished"``.
Delivery state lives on the job row (``notify_status``: pending → delivered | failed; a retry resets it)
and every attempt is logged in ``deliveries``. Only terminal jobs are ever notified. A batch's
``batch.finished`` notification (``webhooks.batches``) is sent, signed and retried by the same ``send``
and ``after_attempt``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col
from standardwebhooks import Webhook

from imagegen.constants import clip
from imagegen.errors import ImagegenError
from imagegen.jobview import job_to_dict
from imagegen.messages import Step, notify_step
from imagegen.net.fetch import post_json
from imagegen.net.urls import FetchPolicy
from imagegen.runtime import Runtime
from imagegen.store.models import Delivery, Job
from imagegen.store.transitions import TERMINAL
from imagegen.timing.backoff import compute_backoff
from imagegen.timing.timers import schedule

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


#: What ``imagegen retry``/``requeue`` write, so the caller hears the job's next outcome too.
RESET: dict[str, Any] = {"notify_status": None, "notify_attempts": 0, "notify_next_at": None}


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for ``body`` (secret in ``whsec_<base64>`` form)."""
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())


def message_id(job: Job) -> str:
    """The ``webhook-id`` of the job's current outcome: stable across delivery retries, new per outcome."""
    stamp = int(job.finished_at.timestamp() * 1_000_000) if job.finished_at else 0
    return f"msg_{job.id}_{stamp}"


def headers_for(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """Standard Webhooks headers (unsigned when no secret is configured)."""
    timestamp = int(now if now is not None else time.time())
    out = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secret:
        out["webhook-signature"] = sign(secret, msg_id, timestamp, body)
    return out


def claim(rt: Runtime, job_id: str) -> Step | None:
    """If the job ended and wants a notification that nobody claimed yet, claim it (CAS) and say so."""
    due = rt.now() + timedelta(seconds=rt.settings.timers.dispatch_grace_s)
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
    """Reconciler: claim up to ``limit`` ended jobs owed a notification and lost pending ones (a quarter
    of ``limit`` is kept for the lost, so a stream of new endings cannot starve them). Each claim is one
    bounded ``UPDATE … WHERE id IN (SELECT … LIMIT n)``: a run costs the same whatever the backlog."""
    grace = now + timedelta(seconds=rt.settings.timers.dispatch_grace_s)
    new = [col(Job.callback_url).is_not(None), col(Job.notify_status).is_(None), _ended()]
    lost = [*_owed(), col(Job.notify_next_at) < now]
    with rt.session() as s:
        ids = _claim_some(s, lost, limit // 4, None, grace)
        ids += _claim_some(s, new, limit - len(ids), PENDING, grace)
        ids += _claim_some(s, lost, limit - len(ids), None, grace)
    return [notify_step(job_id) for job_id in ids]


def _claim_some(
    s: Session, where: list[ColumnElement[bool]], limit: int, status: str | None, next_at: datetime
) -> list[str]:
    if limit <= 0:
        return []
    candidates = sa.select(col(Job.id)).where(*where).order_by(col(Job.finished_at)).limit(limit)
    values: dict[str, object] = {"notify_next_at": next_at}
    if status is not None:
        values["notify_status"] = status
    stmt = (
        sa.update(Job)
        .where(col(Job.id).in_(candidates.scalar_subquery()), *where)  # re-checked: a racing claim loses
        .values(**values)
        .returning(col(Job.id))
        .execution_options(synchronize_session=False)
    )
    return list(s.execute(stmt).scalars())


def deliver(rt: Runtime, job_id: str) -> Step | None:
    """One delivery attempt; returns the retry message when it failed and attempts remain."""
    settings = rt.settings
    with rt.read_session() as s:
        job = s.scalars(sa.select(Job).where(col(Job.id) == job_id, *_owed())).first()
    if job is None or not job.callback_url:
        return None  # delivered, reset by a retry, or the job is not terminal (queued again): never sent
    body = json.dumps(
        {**job_to_dict(job, public_url=settings.imagegen_public_url), "type": "job.finished"}, default=str
    ).encode()
    headers = headers_for(settings.imagegen_webhook_secret.get_secret_value(), message_id(job), body)
    # The outcome this delivery is about: a retry that ended the job again meanwhile is not touched.
    same = [col(Job.id) == job_id, *_owed(), col(Job.finished_at) == job.finished_at]
    attempt = job.notify_attempts + 1
    sent = send(rt, job.callback_url, body, headers)
    with rt.session() as s:
        s.add(Delivery(job_id=job_id, attempt=attempt, **sent.logged()))
        values, delay = after_attempt(rt, attempt, sent.error)
        moved = s.execute(sa.update(Job).where(*same).values(**values))
    if delay is None or int(getattr(moved, "rowcount", 0)) != 1:
        return None  # delivered, given up, or the outcome changed meanwhile
    return notify_step(job_id, delay)


@dataclass(frozen=True)
class Sent:
    """What one POST to a callback URL gave: the HTTP status if one came back, and the error if it failed."""

    http_status: int | None
    error: str | None
    duration_ms: int

    def logged(self) -> dict[str, Any]:
        """The ``deliveries`` columns this attempt fills."""
        return {"http_status": self.http_status, "error": self.error, "duration_ms": self.duration_ms}


def send(rt: Runtime, url: str, body: bytes, headers: dict[str, str]) -> Sent:
    """One POST of a notification; any status but 2xx, or no answer, is an error (never raised)."""
    settings = rt.settings
    policy = FetchPolicy(allow_private=settings.http.allow_private_urls, max_bytes=64 * 1024, content_types=())
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        status = post_json(url, body, headers, policy, client=rt.fetch_client).status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except ImagegenError as exc:  # UnsafeURL, FetchFailed: never a traceback out of the task
        error = clip(f"{type(exc).__name__}: {exc}")
    return Sent(status, error, int((time.monotonic() - started) * 1000))


def after_attempt(rt: Runtime, attempt: int, error: str | None) -> tuple[dict[str, Any], float | None]:
    """The notify columns after delivery attempt ``attempt`` (1-based), and the delay before the next one
    (None: delivered, or ``IMAGEGEN_NOTIFY_MAX_ATTEMPTS`` spent and given up)."""
    settings = rt.settings
    if error is None:
        return {"notify_status": DELIVERED, "notify_attempts": attempt, "notify_next_at": None}, None
    if attempt >= settings.budgets.notify_attempts:
        return {"notify_status": FAILED, "notify_attempts": attempt, "notify_next_at": None}, None
    delay = compute_backoff(
        attempt,
        base=settings.backoff.base_s * 2,
        cap=settings.timers.eta_max_s,
        rng=rt.rng,
        jitter=False,
    )
    timer = schedule(rt.now(), delay, settings)
    return {"notify_attempts": attempt, "notify_next_at": timer.values["dispatch_until"]}, delay


def _ended() -> ColumnElement[bool]:
    return col(Job.status).in_([t.value for t in TERMINAL])


def _owed() -> list[ColumnElement[bool]]:
    """A notification is owed: pending, and the job is terminal (checked in SQL at every step)."""
    return [col(Job.notify_status) == PENDING, _ended()]


def deliveries(rt: Runtime, job_id: str) -> list[Delivery]:
    """The delivery log of one job, oldest first."""
    with rt.session() as s:
        return list(s.scalars(sa.select(Delivery).where(col(Delivery.job_id) == job_id).order_by(col(Delivery.id))))
