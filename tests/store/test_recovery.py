"""Recovery per queue and paused keys with a fallback, on a real database and a real (private) Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col

from config.settings import Settings
from imagegen import devstack
from imagegen.jobs import recovery
from imagegen.jobs.reconciler import reconcile
from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus as S

pytestmark = pytest.mark.store

GRACE = 10.0


@pytest.fixture
def rrt(migrated_url: str) -> Iterator[Runtime]:
    proc, url = devstack.start_redis()
    runtime = Runtime.create(Settings(database_url=migrated_url, redis_url=url, imagegen_dispatch_grace_s=GRACE))
    with runtime.session() as s:
        s.execute(sa.text("DELETE FROM jobs"))
        s.execute(sa.text("DELETE FROM attempts"))
        s.execute(sa.text("UPDATE provider_state SET paused = false"))
    yield runtime
    runtime.close()
    proc.stop()


def _job(rt: Runtime, *, sent_ago: float | None, **fields: object) -> str:
    job, _ = create_job(rt, ImageRequest.from_dict({"prompt": "p", **fields}))
    sent = None if sent_ago is None else rt.now() - timedelta(seconds=sent_ago) + timedelta(seconds=GRACE)
    with rt.session() as s:
        s.execute(
            sa.update(Job)
            .where(col(Job.id) == job.id)
            .values(dispatch_until=sent, next_attempt_at=rt.now() - timedelta(seconds=1))
        )
    return job.id


def test_each_queue_is_judged_on_its_own(rrt: Runtime) -> None:
    rrt.redis.rpush("batch", *[b"x"] * 600)  # a deep batch queue (its messages are never consumed here)
    lost_interactive = _job(rrt, sent_ago=GRACE * 1.5)
    lost_batch = _job(rrt, sent_ago=GRACE * 1.5, priority="batch")
    long_lost_batch = _job(rrt, sent_ago=GRACE * (recovery.LOST_GRACES + 0.5), priority="batch")
    in_flight = _job(rrt, sent_ago=GRACE * 0.5)
    released = {st.job_id for st in reconcile(rrt).steps}
    assert lost_interactive in released, "a deep batch queue held back the recovery of an interactive submit"
    assert lost_batch not in released, "a message in a deep queue is most likely still waiting there"
    assert long_lost_batch in released, "a long-lost message must be re-sent whatever the backlog"
    assert in_flight not in released
    rrt.redis.delete("batch")
    assert lost_batch in {st.job_id for st in reconcile(rrt).steps}


def test_parked_jobs_on_a_paused_key_move_to_their_next_hop(rrt: Runtime) -> None:
    with rrt.session() as s:
        repo.pause_provider(s, provider="apidot", reason="insufficient_credits", message="402")
        repo.pause_provider(s, provider="image2", reason="auth_failed", message="401")
    moving = _job(rrt, sent_ago=None, fallback=["image2", "openai"])
    stays = _job(rrt, sent_ago=None)
    last_hop = _job(rrt, sent_ago=None, provider="image2", fallback=["apidot"])
    with rrt.session() as s:  # it already moved to apidot, the end of its route
        s.execute(sa.update(Job).where(col(Job.id) == last_hop).values(provider="apidot"))
    sent = [st.job_id for st in reconcile(rrt).steps if st.task == "imagegen.submit"]
    sent += [st.job_id for st in reconcile(rrt).steps if st.task == "imagegen.submit"]
    with rrt.session() as s:
        jobs = {i: repo.get_job(s, i) for i in (moving, stays, last_hop)}
        attempts = [a.kind for a in repo.list_attempts(s, moving)]
    # apidot (paused) → image2 (paused too) → openai.
    moved = jobs[moving]
    assert moved is not None and (moved.provider, moved.status) == ("openai", "queued")
    assert attempts == ["fallback", "fallback"]
    assert 1 <= sent.count(moving) <= 2
    for other in (stays, last_hop):
        job = jobs[other]
        assert job is not None and (job.provider, job.status) == ("apidot", S.QUEUED.value)
        assert other not in sent
