"""Bounded work in SQL: notification claims touch at most ``limit`` rows; reads never wait for the writer."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from imagegen.ops import actions as admin
from imagegen.ops import requeue as requeue_ops
from imagegen.producer import create_batch
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus as S
from imagegen.webhooks import outbound as notifications

pytestmark = pytest.mark.store


def _ended_with_callback(rt: Runtime, n: int, **values: Any) -> list[str]:
    requests = [ImageRequest(prompt=f"p{i}", callback_url="https://example.com/hook") for i in range(n)]
    _, jobs = create_batch(rt, requests)
    ids = [j.id for j in jobs]
    with rt.session() as s:
        s.execute(
            sa.update(Job)
            .where(col(Job.id).in_(ids))
            .values(status=S.SUCCEEDED.value, finished_at=rt.now(), next_attempt_at=None, **values)
        )
    return ids


def test_claim_due_writes_at_most_limit_rows(rt: Runtime) -> None:
    fresh = _ended_with_callback(rt, 40)
    lost = _ended_with_callback(
        rt, 40, notify_status=notifications.PENDING, notify_next_at=rt.now() - timedelta(minutes=5)
    )
    before = rt.now()
    steps = notifications.claim_due(rt, before, 10)
    assert len(steps) <= 10
    with rt.session() as s:
        claimed = s.scalar(
            sa.select(sa.func.count()).where(col(Job.id).in_(fresh), col(Job.notify_status) == notifications.PENDING)
        )
        resent = s.scalar(sa.select(sa.func.count()).where(col(Job.id).in_(lost), col(Job.notify_next_at) > before))
    touched = int(claimed or 0) + int(resent or 0)
    assert touched <= 10, f"one claim rewrote {touched} rows (limit 10)"
    assert int(resent or 0) >= 1, "new endings starved the re-send of lost notifications"
    # Repeated runs drain both kinds, limit by limit.
    seen = {st.job_id for st in steps}
    for _ in range(10):
        seen |= {st.job_id for st in notifications.claim_due(rt, rt.now(), 10)}
    assert seen == set(fresh) | set(lost)


def test_retry_resets_the_notification_and_deliver_skips_unended_jobs(rt: Runtime) -> None:
    [job_id] = _ended_with_callback(rt, 1, notify_status=notifications.DELIVERED, notify_attempts=2)
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job_id).values(status=S.FAILED.value))
    assert admin.retry(rt, job_id).ok
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    assert job is not None
    assert (job.notify_status, job.notify_attempts, job.notify_next_at) == (None, 0, None)
    # A pending notification of a job that is not terminal (queued again) is never sent.
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job_id).values(notify_status=notifications.PENDING))
    assert notifications.deliver(rt, job_id) is None
    assert notifications.deliveries(rt, job_id) == []


def test_requeue_resets_the_notification(rt: Runtime) -> None:
    ids = _ended_with_callback(rt, 3, notify_status=notifications.FAILED, notify_attempts=8)
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id).in_(ids)).values(status=S.EXPIRED.value))
    steps = requeue_ops.retry_many(rt, status="expired")
    assert {st.job_id for st in steps} == set(ids)
    with rt.session() as s:
        rows = s.execute(sa.select(col(Job.notify_status), col(Job.notify_attempts)).where(col(Job.id).in_(ids))).all()
    assert {tuple(r) for r in rows} == {(None, 0)}


def _hold_write_lock(rt: Runtime, seconds: float, started: threading.Event) -> None:
    with rt.session() as s:
        s.execute(sa.update(Job).values(progress=1))  # takes the write lock (row locks on PostgreSQL)
        started.set()
        time.sleep(seconds)


@pytest.mark.parametrize("kind", ["read_session", "session"])
def test_a_read_session_does_not_wait_for_a_writer(rt: Runtime, kind: str) -> None:
    _ended_with_callback(rt, 3)
    started = threading.Event()
    hold = 3.0
    writer = threading.Thread(target=_hold_write_lock, args=(rt, hold, started))
    writer.start()
    assert started.wait(10)
    begin = time.monotonic()
    with getattr(rt, kind)() as s:
        n = s.scalar(sa.select(sa.func.count()).select_from(Job))
    waited = time.monotonic() - begin
    writer.join()
    assert n == 3
    print(f"\n[{kind}] {rt.engine.dialect.name}: read waited {waited:.2f}s while a writer held the lock {hold}s")
    if kind == "read_session":
        assert waited < 1.0
    elif rt.engine.dialect.name == "sqlite":
        assert waited > hold / 2  # the write session (BEGIN IMMEDIATE) queues behind the writer
