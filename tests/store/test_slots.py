"""Jobs parked for an in-flight slot are never stranded: on a real database and a real (private) Redis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from config.settings import Settings
from imagegen import devstack, slots
from imagegen.producer import create_job
from imagegen.reconciler import reconcile
from imagegen.requests import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo

pytestmark = pytest.mark.store


@pytest.fixture
def make_rt(migrated_url: str) -> Iterator[Callable[..., Runtime]]:
    proc, url = devstack.start_redis()
    made: list[Runtime] = []

    def make(**settings: object) -> Runtime:
        rt = Runtime.create(Settings(database_url=migrated_url, redis_url=url, **settings))
        if not made:
            with rt.session() as s:
                s.execute(sa.text("DELETE FROM jobs"))
                s.execute(sa.text("DELETE FROM attempts"))
                s.execute(sa.text("UPDATE provider_state SET paused = false"))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
    proc.stop()


def _parked(rt: Runtime, n: int) -> list[str]:
    ids = []
    for i in range(n):
        job, _ = create_job(rt, ImageRequest(prompt=f"p {i}"))
        with rt.session() as s:
            assert slots.park(s, job.id)
        ids.append(job.id)
    return ids


@pytest.mark.parametrize("limits", [None, {"apidot": {"rate_per_s": 5}}, {"openai": {"max_in_flight": 1}}])
def test_parked_jobs_are_released_once_the_cap_is_removed(
    make_rt: Callable[..., Runtime], limits: dict[str, dict[str, float]] | None
) -> None:
    # Parked under a cap of 1; the processes restart without a cap for that key.
    capped = make_rt(imagegen_provider_limits=json.dumps({"apidot": {"max_in_flight": 1}}))
    ids = _parked(capped, 3)
    rt = make_rt(imagegen_provider_limits=json.dumps(limits) if limits else None)
    released = {st.job_id for st in reconcile(rt).steps}
    assert released == set(ids), "parked for a slot under a cap that no longer exists: stranded until expiry"
    with rt.session() as s:
        assert all(j is not None and j.next_attempt_at is not None for j in (repo.get_job(s, i) for i in ids))
