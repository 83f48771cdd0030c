"""Jobs parked for an in-flight slot, and jobs whose finalizer died, are never stranded or cycled forever:
on a real database and a real (private) Redis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col

from config.settings import Settings
from imagegen import devstack
from imagegen.jobs import finalize, slots
from imagegen.jobs.downloads import pending_entries
from imagegen.jobs.reconciler import reconcile
from imagegen.jobs.submit import submit_job
from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job

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


def _die_mid_download(rt: Runtime, job_id: str) -> None:
    """What a finalizer killed during its download leaves behind (a hard time limit, an OOM on the file)."""
    with rt.session() as s:
        s.execute(
            sa.update(Job)
            .where(col(Job.id) == job_id)
            .values(
                status="finalizing",
                upstream_task_id="t-1",
                result=pending_entries(["https://files.example/huge.png"]),
                lease_token="dead",
                lease_until=rt.now() - timedelta(seconds=1),
                next_attempt_at=None,
                dispatch_until=None,
            )
        )


def test_a_finalizer_dying_on_every_download_is_bounded(make_rt: Callable[..., Runtime]) -> None:
    # A result that kills every finalizer that fetches it must not cycle finalizing -> running until the
    # job's deadline: each death is a failed download attempt.
    rt = make_rt(imagegen_max_download_attempts=3)
    job, _ = create_job(rt, ImageRequest(prompt="p"))
    deaths = 0
    row: Job | None = None
    for _ in range(10):
        _die_mid_download(rt, job.id)
        deaths += 1
        reconcile(rt)
        with rt.session() as s:
            row = repo.get_job(s, job.id)
        assert row is not None
        if row.status != "running":
            break
    assert row is not None
    assert (row.status, row.error_kind, deaths, row.download_errors) == ("failed", "result_unavailable", 3, 3)
    assert row.result == pending_entries(["https://files.example/huge.png"]), "the URLs stay visible"


def test_a_lost_finalize_message_is_handed_back_without_spending_the_budget(make_rt: Callable[..., Runtime]) -> None:
    rt = make_rt(imagegen_max_download_attempts=1)
    job, _ = create_job(rt, ImageRequest(prompt="p"))
    _die_mid_download(rt, job.id)
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job.id).values(lease_token=None))  # no finalizer took it
    reconcile(rt)
    with rt.session() as s:
        row = repo.get_job(s, job.id)
    assert row is not None and (row.status, row.download_errors) == ("running", 0)


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82"
)


def test_a_finalize_message_behind_a_deep_poll_queue_still_finalizes(make_rt: Callable[..., Runtime]) -> None:
    # The finalize message waits in the poll queue longer than the claim's dispatch grace: the reconciler
    # hands the job back to running and sends a poll, which claims again and sends a new finalize message
    # to the back of the same deep queue. If the late message is dropped, a paid result cycles until expiry.
    rt = make_rt(imagegen_allow_private_urls=True)
    rt._fetch_client = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=PNG, headers={"content-type": "image/png"}))
    )
    job, _ = create_job(rt, ImageRequest(prompt="p"))
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job.id).values(status="running", upstream_task_id="t-1"))
        assert finalize.claim(rt, s, job.id, urls=["http://127.0.0.1:9/f.png"])
    with rt.session() as s:  # the grace passes while the finalize message waits
        s.execute(sa.update(Job).where(col(Job.id) == job.id).values(lease_until=rt.now() - timedelta(seconds=1)))
    reconcile(rt)
    finalize.finalize_job(rt, job.id)  # the first finalize message, at last
    with rt.session() as s:
        row = repo.get_job(s, job.id)
    assert row is not None and row.status == "succeeded", (
        f"the late finalize message was dropped ({row and row.status})"
    )
    assert [e["path"] is not None for e in row.result or []] == [True]


def test_a_fallback_switch_drops_the_rate_slot_reserved_on_the_old_key(make_rt: Callable[..., Runtime]) -> None:
    # An interactive job waiting for its reserved apidot slot when apidot is paused moves to openai; a
    # reservation is only good on the key that made it, else every such job bursts past openai's limit.
    limits = {"apidot": {"rate_per_s": 1}, "openai": {"rate_per_s": 1}}
    rt = make_rt(imagegen_provider_limits=json.dumps(limits))
    assert rt.limiter is not None
    for _ in range(5):
        rt.limiter.request("openai")  # openai's next free slot is seconds away
    job, _ = create_job(rt, ImageRequest(prompt="p", fallback=["openai"]))
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job.id).values(rate_reserved=True))  # held an apidot slot
        repo.pause_provider(s, provider="apidot", reason="insufficient_credits", message="402")
    submit_job(rt, job.id)  # apidot is paused: switched to openai
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job.id).values(next_attempt_at=None))
    submit_job(rt, job.id)  # on openai: must wait for openai's limiter, not go at once
    with rt.session() as s:
        row = repo.get_job(s, job.id)
    assert row is not None and row.provider == "openai"
    assert (row.status, row.submit_attempts) == ("queued", 0), "went past openai's rate limit on apidot's slot"


def test_a_released_interactive_job_on_its_way_holds_the_free_slot(make_rt: Callable[..., Runtime]) -> None:
    # Cap 1, nothing in flight, an interactive job released and its message on the way. A batch job that
    # arrives meanwhile yields (parks); parking must not release the next batch job into that same slot,
    # which would yield and release the next... a busy loop until the interactive message lands.
    rt = make_rt(imagegen_provider_limits=json.dumps({"apidot": {"max_in_flight": 1}}))
    batch = [create_job(rt, ImageRequest(prompt=f"b {i}", priority="batch"))[0].id for i in range(3)]
    with rt.session() as s:
        for job_id in batch[1:]:
            slots.park(s, job_id)
    interactive = _parked(rt, 1)[0]
    with rt.session() as s:
        released = slots.release(rt, s, "apidot", rt.now())
    assert [st.job_id for st in released] == [interactive]
    steps = submit_job(rt, batch[0])  # a batch submit arrives before the interactive one
    with rt.session() as s:
        row = repo.get_job(s, batch[0])
    assert row is not None and row.wait_reason == "slot", "the batch job yields to the interactive one"
    assert [st.job_id for st in steps] == [], "parking released another batch job into the promised slot"
