"""The store and lifecycle against a real database: CAS transitions, races, claims, idempotency, UTC."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col

from config.settings import Settings
from imagegen.errors import IdempotencyConflict, InvalidTransition
from imagegen.jobs import pauses
from imagegen.jobs.reconciler import reconcile
from imagegen.ops import actions as admin
from imagegen.ops.requeue import retry_many
from imagegen.producer import create_batch, create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.db import current_revision, head_revision
from imagegen.store.models import Job, ProviderState
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition, update_in

pytestmark = pytest.mark.store


def _job(rt: Runtime, **fields) -> Job:
    job, created = create_job(rt, ImageRequest(prompt="p", **fields))
    assert created
    return job


def _set(rt: Runtime, job_id: str, **values) -> None:
    with rt.session() as s:
        s.execute(sa.update(Job).where(col(Job.id) == job_id).values(**values))


def test_schema_is_at_head(rt: Runtime) -> None:
    assert current_revision(rt.engine) == head_revision(str(rt.engine.url))
    with rt.session() as s:
        assert {p.provider for p in s.scalars(sa.select(ProviderState))} >= {
            "apidot",
            "openai",
            "image2",
        }


def test_transition_is_compare_and_set(rt: Runtime) -> None:
    job = _job(rt)
    with rt.session() as s:
        assert transition(s, job.id, source={S.QUEUED}, target=S.SUBMITTING)
        assert not transition(s, job.id, source={S.QUEUED}, target=S.SUBMITTING)
    with pytest.raises(InvalidTransition), rt.session() as s:
        transition(s, job.id, source={S.SUCCEEDED}, target=S.QUEUED)


def test_terminal_transition_clears_timers_and_stamps_finish(rt: Runtime) -> None:
    job = _job(rt)
    with rt.session() as s:
        assert transition(s, job.id, source={S.QUEUED}, target=S.CANCELED, error_kind="canceled")
        row = repo.get_job(s, job.id)
    assert row is not None
    assert row.finished_at is not None and row.next_attempt_at is None and row.dispatch_until is None


def _race(url: str, job_id: str, barrier, results) -> None:
    rt = Runtime.create(Settings(database_url=url, redis_url="redis://unused:1/0"), check_schema=False)
    barrier.wait()
    with rt.session() as s:
        results.put(transition(s, job_id, source={S.RUNNING}, target=S.FINALIZING))
    rt.close()


def test_processes_racing_the_same_transition_exactly_one_wins(rt: Runtime, migrated_url: str) -> None:
    job = _job(rt)
    _set(rt, job.id, status="running", upstream_task_id="t-1")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(migrated_url, job.id, barrier, results)) for _ in range(6)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sorted(outcomes) == [False] * 5 + [True]


def test_idempotency_key_returns_the_existing_job(rt: Runtime) -> None:
    first, created = create_job(rt, ImageRequest(prompt="a", idempotency_key="k-1"))
    again, created_again = create_job(rt, ImageRequest(prompt="a", idempotency_key="k-1"))
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflict, match="k-1"):
        create_job(rt, ImageRequest(prompt="b", idempotency_key="k-1"))  # the same key, another request
    with rt.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 1


def test_batch_with_an_existing_key_keeps_that_job(rt: Runtime) -> None:
    existing, _ = create_job(rt, ImageRequest(prompt="x", idempotency_key="k-2"))
    batch_id, jobs = create_batch(rt, [ImageRequest(prompt="x", idempotency_key="k-2"), ImageRequest(prompt="y")])
    assert jobs[0].id == existing.id and jobs[1].batch_id == batch_id


def test_timestamps_are_utc_aware(rt: Runtime) -> None:
    job = _job(rt)
    with rt.session() as s:
        row = repo.get_job(s, job.id)
    assert row is not None and row.created_at.tzinfo is not None
    assert row.created_at.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - row.created_at).total_seconds()) < 60


def test_reconcilers_never_release_a_job_twice(rt: Runtime) -> None:
    past = datetime.now(UTC) - timedelta(seconds=5)
    ids = [_job(rt).id for _ in range(30)]
    for job_id in ids:
        _set(rt, job_id, next_attempt_at=past, dispatch_until=None)
    first, second = reconcile(rt), reconcile(rt)
    released = [st.job_id for st in first.steps] + [st.job_id for st in second.steps]
    assert sorted(released) == sorted(ids)


def test_reconciler_skips_paused_providers_and_expires_past_deadlines(rt: Runtime) -> None:
    past = datetime.now(UTC) - timedelta(seconds=5)
    waiting, late = _job(rt), _job(rt)
    _set(rt, waiting.id, next_attempt_at=past, dispatch_until=None)
    _set(rt, late.id, deadline_at=past)
    with rt.session() as s:
        repo.pause_provider(s, provider="apidot", reason="insufficient_credits", message="top up")
    report = reconcile(rt)
    assert late.id in report.expired and report.steps == []
    pauses.resume(rt, "apidot")
    assert [st.job_id for st in reconcile(rt).steps] == [waiting.id]


@pytest.mark.parametrize(
    "policy, status, kind",
    [("at_least_once", "queued", None), ("at_most_once", "failed", "submit_outcome_unknown")],
)
def test_expired_submit_lease_follows_the_submit_policy(rt: Runtime, policy, status, kind) -> None:
    job = _job(rt)
    lapsed = datetime.now(UTC) - timedelta(seconds=1)
    _set(rt, job.id, status="submitting", lease_token="t", lease_until=lapsed, submit_inflight_at=lapsed)
    rt.settings = Settings(database_url=str(rt.engine.url), imagegen_submit_policy=policy)
    reconcile(rt)
    with rt.session() as s:
        row = repo.get_job(s, job.id)
    assert row is not None and (row.status, row.error_kind) == (status, kind)


def test_lease_expired_before_the_post_is_always_resubmitted(rt: Runtime) -> None:
    job = _job(rt)
    _set(rt, job.id, status="submitting", lease_token="t", lease_until=datetime.now(UTC) - timedelta(seconds=1))
    rt.settings = Settings(database_url=str(rt.engine.url), imagegen_submit_policy="at_most_once")
    reconcile(rt)
    with rt.session() as s:
        assert repo.get_job(s, job.id).status == "queued"  # type: ignore[union-attr]


def test_update_in_requires_the_status(rt: Runtime) -> None:
    job = _job(rt)
    with rt.session() as s:
        assert not update_in(s, job.id, status=S.RUNNING, polls=5)
        assert update_in(s, job.id, status=S.QUEUED, polls=5)


def test_a_retried_job_gets_fresh_ambiguity_and_download_budgets(rt: Runtime) -> None:
    """A job that spent its unknown-outcome or download budget and is retried by an operator starts over:
    with the old counts, its first ambiguous submit or failed download would end it again at once."""
    one, two = _job(rt), _job(rt)
    for job in (one, two):
        _set(
            rt,
            job.id,
            status="failed",
            error_kind="submit_outcome_unknown",
            finished_at=datetime.now(UTC),
            unknown_submits=2,
            download_errors=3,
            wait_reason="slot",
        )
    assert admin.retry(rt, one.id).ok
    assert [st.job_id for st in retry_many(rt, error_kind="submit_outcome_unknown")] == [two.id]
    with rt.session() as s:
        for job in (one, two):
            row = repo.get_job(s, job.id)
            assert row is not None and row.status == "queued"
            assert (row.unknown_submits, row.download_errors, row.wait_reason) == (0, 0, None)
