"""The in-flight cap with a released interactive job on its way: batch jobs take the other free slots
(no park/release churn), and releases never hand out more slots than are free."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col

from config.settings import Settings
from imagegen.jobs import slots
from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus as S

pytestmark = pytest.mark.store


@pytest.fixture
def capped(migrated_url: str) -> Iterator[Runtime]:
    limits = '{"apidot": {"max_in_flight": 4}}'
    runtime = Runtime.create(
        Settings(database_url=migrated_url, redis_url="redis://unused:1/0", imagegen_provider_limits=limits)
    )
    with runtime.session() as s:
        s.execute(sa.text("DELETE FROM jobs"))
        s.execute(sa.text("UPDATE provider_state SET paused = false"))
    yield runtime
    runtime.close()


def _job(rt: Runtime, priority: str, **values: object) -> str:
    job, _ = create_job(rt, ImageRequest(prompt="p", priority=priority))
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job.id).values(**values))
    return job.id


def test_one_interactive_job_on_its_way_holds_one_slot_not_all(capped: Runtime) -> None:
    rt = capped
    now = rt.now()
    _job(rt, "interactive", status=S.RUNNING.value, dispatch_until=None)  # 1 of 4 busy
    # Released for a slot, its submit message on the way (it will take one of the 3 free slots).
    _job(rt, "interactive", wait_reason=slots.SLOT, dispatch_until=now + timedelta(seconds=60))
    batch = [_job(rt, "batch", wait_reason=slots.SLOT, dispatch_until=None) for _ in range(5)]
    with rt.session() as s:
        arriving = repo.get_job(s, batch[0])
        assert arriving is not None
        # Before: False (any waiting interactive job refused every batch job every free slot), and the
        # parked batch job was released again at once by its own park: a park/release loop.
        assert slots.admit(rt, s, arriving)
    with rt.session() as s:
        released = slots.release(rt, s, "apidot", now)
    # 3 free slots, one of them promised to the interactive job on its way: 2 batch jobs, not 3.
    assert len(released) == 2


def test_release_counts_jobs_already_released(capped: Runtime) -> None:
    rt = capped
    now = rt.now()
    for _ in range(6):
        _job(rt, "batch", wait_reason=slots.SLOT, dispatch_until=None)
    with rt.session() as s:
        first = slots.release(rt, s, "apidot", now)
    with rt.session() as s:
        again = slots.release(rt, s, "apidot", now)
    assert len(first) == 4
    # Before: the released jobs' slots were counted free again until they claimed them (4 more
    # released, which parked again on arrival).
    assert again == []
