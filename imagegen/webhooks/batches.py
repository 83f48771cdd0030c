"""Batch notifications: one signed ``batch.finished`` POST to a batch's ``callback_url`` once all its jobs ended.

The body is ``{"type": "batch.finished", "batch_id", "tenant", "counts": {status: n}, "finished_at"}``,
signed, sent and retried exactly as a job's ``job.finished`` (``outbound.send``, ``outbound.after_attempt``).
Its state lives on the batch row: ``notify_status`` NULL (open) → pending → delivered | failed.

Exactly one claim per outcome: after a job of a batch with a callback ends, and after that ending has
committed, one compare-and-set ``UPDATE batches … WHERE notify_status IS NULL AND NOT EXISTS (an active
job of the batch)`` decides. Of two workers ending the last two jobs at once, the later commit's claim
sees both ended, and the row's own status lets only one claim win. The reconciler makes the same claim
for batches whose check was missed (a process died between the ending and its claim).

A retry (``imagegen retry``, ``requeue``) of one of its jobs reopens a batch (``reopen``): when every job
has ended again, that is a new outcome, notified under a new ``webhook-id`` (``message_id`` follows
``finished_at``). A claim that read the jobs just before such a retry committed can leave the batch
pending with a job queued again; its delivery finds the batch unfinished, sends nothing and reopens it.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from imagegen.jobview import iso
from imagegen.messages import Step, notify_batch_step
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import BATCHES, JOBS, Batch, Delivery
from imagegen.store.transitions import ACTIVE
from imagegen.webhooks.outbound import PENDING, after_attempt, headers_for, send

BATCH_FINISHED = "batch.finished"

#: What reopening writes: the batch is open again, and no delivery of its last outcome goes on.
REOPEN: dict[str, Any] = {"notify_status": None, "notify_attempts": 0, "notify_next_at": None, "finished_at": None}


def message_id(batch: Batch) -> str:
    """The ``webhook-id`` of the batch's current outcome: stable across delivery retries, new per outcome."""
    stamp = int(batch.finished_at.timestamp() * 1_000_000) if batch.finished_at else 0
    return f"msg_batch_{batch.id}_{stamp}"


def payload(batch: Batch, counts: dict[str, int]) -> dict[str, Any]:
    """The ``batch.finished`` body: counts by status over every job of the batch."""
    return {
        "type": BATCH_FINISHED,
        "batch_id": batch.id,
        "tenant": batch.tenant,
        "counts": counts,
        "finished_at": iso(batch.finished_at),
    }


def _finished() -> ColumnElement[bool]:
    """No job of the batch is active (its jobs all carry ``batch_callback``: the partial index answers)."""
    active = (
        sa.select(sa.literal(1))
        .select_from(JOBS)
        .where(
            JOBS.c.batch_id == BATCHES.c.id,
            JOBS.c.batch_callback == sa.true(),
            JOBS.c.status.in_([s.value for s in ACTIVE]),
        )
    )
    return ~sa.exists(active)


def _open() -> list[ColumnElement[bool]]:
    """Owed a claim: a callback, no outcome claimed since it was created or reopened, every job ended."""
    return [BATCHES.c.callback_url.is_not(None), BATCHES.c.notify_status.is_(None), _finished()]


def _claimed(now: datetime, grace: datetime) -> dict[str, Any]:
    return {"notify_status": PENDING, "notify_attempts": 0, "notify_next_at": grace, "finished_at": now}


def claim(rt: Runtime, batch_id: str) -> Step | None:
    """If every job of the batch has ended and its outcome is not claimed yet, claim it (CAS) and say so.

    Must run after the ending that may have finished the batch has committed (``jobs.endings.follow_up``).
    """
    now = rt.now()
    grace = now + timedelta(seconds=rt.settings.timers.dispatch_grace_s)
    with rt.session() as s:
        won = s.execute(sa.update(BATCHES).where(BATCHES.c.id == batch_id, *_open()).values(**_claimed(now, grace)))
    return notify_batch_step(batch_id) if int(getattr(won, "rowcount", 0)) == 1 else None


def claim_due(rt: Runtime, now: datetime, limit: int) -> list[Step]:
    """Reconciler: claim finished batches whose claim was missed, and resend pending deliveries whose
    message was lost (a quarter of ``limit`` is kept for those); each one bounded ``UPDATE … RETURNING``."""
    grace = now + timedelta(seconds=rt.settings.timers.dispatch_grace_s)
    lost = [
        BATCHES.c.callback_url.is_not(None),
        BATCHES.c.notify_status == PENDING,
        BATCHES.c.notify_next_at < now,
    ]
    with rt.session() as s:
        ids = _claim_some(s, lost, limit // 4, {"notify_next_at": grace})
        ids += _claim_some(s, _open(), limit - len(ids), _claimed(now, grace))
        ids += _claim_some(s, lost, limit - len(ids), {"notify_next_at": grace})
    return [notify_batch_step(batch_id) for batch_id in ids]


def _claim_some(s: Session, where: list[ColumnElement[bool]], limit: int, values: dict[str, Any]) -> list[str]:
    if limit <= 0:
        return []
    candidates = sa.select(BATCHES.c.id).where(*where).order_by(BATCHES.c.created_at).limit(limit)
    stmt = (
        sa.update(BATCHES)
        .where(BATCHES.c.id.in_(candidates.scalar_subquery()), *where)  # re-checked: a racing claim loses
        .values(**values)
        .returning(BATCHES.c.id)
    )
    return list(s.execute(stmt).scalars())


def reopen(s: Session, batch_ids: Collection[str]) -> None:
    """In the transaction that queues jobs of these batches again: each is open, its next outcome is new.

    Every named row is written, open or not: on PostgreSQL the row lock orders this against a claim
    running at the same time (a claim that still won is caught by ``deliver``).
    """
    if batch_ids:
        s.execute(sa.update(BATCHES).where(BATCHES.c.id.in_(sorted(set(batch_ids)))).values(**REOPEN))


def deliver(rt: Runtime, batch_id: str) -> Step | None:
    """One delivery attempt; returns the retry message when it failed and attempts remain."""
    settings = rt.settings
    with rt.read_session() as s:
        batch = s.scalars(sa.select(Batch).where(BATCHES.c.id == batch_id, BATCHES.c.notify_status == PENDING)).first()
        counts = repo.count_by_status(s, batch_id=batch_id) if batch is not None else {}
    if batch is None or not batch.callback_url:
        return None  # delivered, given up, or reopened by a retry: never sent
    # The outcome this delivery is about: a retry and a new claim meanwhile are not touched.
    same = [BATCHES.c.id == batch_id, BATCHES.c.notify_status == PENDING, BATCHES.c.finished_at == batch.finished_at]
    if any(status in ACTIVE for status in counts):
        with rt.session() as s:  # a claim that raced a retry: the batch is open again, not finished
            s.execute(sa.update(BATCHES).where(*same).values(**REOPEN))
        return None
    body = json.dumps(payload(batch, counts)).encode()
    headers = headers_for(settings.imagegen_webhook_secret.get_secret_value(), message_id(batch), body)
    attempt = batch.notify_attempts + 1
    sent = send(rt, batch.callback_url, body, headers)
    with rt.session() as s:
        s.add(Delivery(batch_id=batch_id, attempt=attempt, **sent.logged()))
        values, delay = after_attempt(rt, attempt, sent.error)
        moved = s.execute(sa.update(BATCHES).where(*same).values(**values))
    if delay is None or int(getattr(moved, "rowcount", 0)) != 1:
        return None  # delivered, given up, or the outcome changed meanwhile
    return notify_batch_step(batch_id, delay)


def deliveries(rt: Runtime, batch_id: str) -> list[Delivery]:
    """The delivery log of one batch's notifications, oldest first."""
    with rt.session() as s:
        stmt = sa.select(Delivery).where(col(Delivery.batch_id) == batch_id).order_by(col(Delivery.id))
        return list(s.scalars(stmt))
