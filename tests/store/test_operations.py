"""The operations core against a real database: stats, bulk requeue and purge (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from config.settings import Settings
from imagegen.ids import new_job_id
from imagegen.ops import actions as admin
from imagegen.ops import purge as purge_ops
from imagegen.ops import requeue as requeue_ops
from imagegen.ops import stats as stats_ops
from imagegen.ops.stats import Percentiles
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Attempt, Delivery, Job
from imagegen.store.transitions import TERMINAL, JobStatus

pytestmark = pytest.mark.store


@pytest.fixture
def rt(ops_database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on an emptied database of the operations tests' own, with its results directory under
    ``tmp_path`` (replaces the store tier's ``rt`` here: purge deletes files and deliveries)."""
    settings = Settings(
        database_url=ops_database_url,
        redis_url="redis://127.0.0.1:1/0",
        imagegen_home=tmp_path / "home",
        imagegen_results_dir=tmp_path / "results",
    )
    runtime = Runtime.create(settings)
    with runtime.session() as s:
        for table in ("jobs", "attempts", "deliveries"):
            s.execute(sa.text(f"DELETE FROM {table}"))
    yield runtime
    runtime.close()


NOW = datetime(2030, 1, 2, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def add_job(
    rt: Runtime,
    status: str,
    *,
    provider: str = "apidot",
    created: float = 100,
    submitted: float | None = None,
    finished: float | None = None,
    request: dict[str, Any] | None = None,
    **fields: Any,
) -> str:
    """Insert a job row directly (timestamps in seconds before NOW)."""
    job_id = new_job_id()
    job = Job(
        id=job_id,
        provider=provider,
        model="gpt-image-2",
        request={"prompt": "p", "provider": provider, **(request or {})},
        status=status,
        created_at=ago(created),
        updated_at=ago(created),
        submitted_at=None if submitted is None else ago(submitted),
        finished_at=None if finished is None else ago(finished),
        deadline_at=ago(created) + timedelta(hours=1),
        **fields,
    )
    with rt.session() as s:
        s.add(job)
    return job_id


def get(rt: Runtime, job_id: str) -> Job | None:
    with rt.session() as s:
        return repo.get_job(s, job_id)


# --- stats --------------------------------------------------------------------------------------


def test_stats_counts_rates_durations_and_credits(rt: Runtime) -> None:
    ok = JobStatus.SUCCEEDED.value
    # Succeeded in the window: (created→finished, submitted→finished) = (90, 80), (45, 40), (30, 25), (20, 15).
    add_job(rt, ok, created=100, submitted=90, finished=10, request={"quality": "low"}, submit_attempts=1, polls=3)
    add_job(rt, ok, created=50, submitted=45, finished=5, request={"quality": "high", "resolution": "2K"}, polls=5)
    add_job(rt, ok, created=40, submitted=35, finished=10, submit_attempts=3, polls=1)  # medium/1K by default
    add_job(
        rt,
        ok,
        created=30,
        submitted=25,
        finished=10,
        request={"quality": "low", "size": "1536x1024", "resolution": "4K"},
    )
    add_job(rt, ok, provider="openai", created=60, submitted=55, finished=20, request={"quality": "high"})
    add_job(rt, "failed", created=80, submitted=70, finished=20, error_kind="upstream_unavailable", submit_attempts=6)
    # Outside the window (ended 2 days ago), and jobs that have not ended.
    add_job(rt, ok, created=2 * 86_400 + 60, finished=2 * 86_400, request={"quality": "high", "resolution": "4K"})
    add_job(rt, "running", created=30, submitted=20)
    add_job(rt, "held", created=3 * 86_400, error_kind="insufficient_credits")

    result = stats_ops.stats(rt, since=timedelta(hours=24), now=NOW)

    assert result.created_by_status == {"failed": 1, "running": 1, "succeeded": 5}
    assert result.active_by_status == {"held": 1, "running": 1}
    assert result.held_by_error_kind == {"insufficient_credits": 1}
    assert result.finished_by_status == {"failed": 1, "succeeded": 5}
    assert result.finished_by_error_kind == {"upstream_unavailable": 1}
    assert result.finished_per_minute == pytest.approx(6 / 1440)
    assert result.succeeded_per_minute == pytest.approx(5 / 1440)
    # Succeeded totals: 90, 45, 30, 20 (apidot) and 40 (openai) → sorted 20, 30, 40, 45, 90.
    assert result.total_seconds == Percentiles(5, 40.0, pytest.approx(81.0))
    assert result.upstream_seconds.count == 5 and result.upstream_seconds.p50 == 35.0
    # low/1K 1 + high/2K 24 + medium/1K 3 + low/4K 4 (custom WxH priced by its resolution); openai unpriced.
    assert result.credits_by_tier == {"high/2K": 24, "low/1K": 1, "low/4K": 4, "medium/1K": 3}
    assert result.credits == 32
    assert result.mean_submit_attempts == pytest.approx(round((1 + 0 + 3 + 0 + 0 + 6) / 6, 3))
    assert result.mean_polls == pytest.approx(round((3 + 5 + 1 + 0 + 0 + 0) / 6, 3))
    as_json = result.to_dict()
    assert as_json["credits"]["total"] == 32 and as_json["finished"]["total"] == 6
    assert as_json["window"]["since"] == "2030-01-01T12:00:00+00:00"


def test_stats_filters_by_provider_and_window(rt: Runtime) -> None:
    add_job(rt, "succeeded", provider="openai", created=600, submitted=590, finished=500)
    add_job(rt, "succeeded", created=600, submitted=590, finished=500, request={"quality": "high"})
    openai = stats_ops.stats(rt, since=timedelta(hours=1), provider="openai", now=NOW)
    assert openai.finished_by_status == {"succeeded": 1} and openai.credits == 0
    short = stats_ops.stats(rt, since=timedelta(minutes=5), now=NOW)
    assert short.finished == 0 and short.total_seconds.count == 0 and short.mean_polls is None
    everything = stats_ops.stats(rt, since=timedelta(hours=1), now=NOW)
    assert everything.credits == 12


# --- bulk requeue -------------------------------------------------------------------------------


def test_retry_many_requeues_only_matching_jobs(rt: Runtime) -> None:
    now = rt.now()
    a = add_job(rt, "failed", error_kind="upstream_unavailable", priority="batch")
    b = add_job(rt, "failed", error_kind="upstream_unavailable", request={"deadline_s": 600})
    other_kind = add_job(rt, "failed", error_kind="generation_failed")
    other_provider = add_job(rt, "failed", provider="openai", error_kind="upstream_unavailable")
    expired = add_job(rt, "expired", error_kind="upstream_unavailable")
    done = add_job(rt, "succeeded")
    # Ended: a first, then b (oldest ending first), all within the last hour of the real clock.
    _set_finished(rt, {a: now - timedelta(minutes=30), b: now - timedelta(minutes=20)})
    _set_finished(rt, {j: now - timedelta(minutes=10) for j in (other_kind, other_provider, expired, done)})

    dry = requeue_ops.find_retryable(rt, error_kind="upstream_unavailable", provider="apidot")
    assert dry == [a, b] and get(rt, a).status == "failed"  # type: ignore[union-attr]

    steps = requeue_ops.retry_many(rt, status="failed", error_kind="upstream_unavailable", provider="apidot")
    assert [(s.task, s.job_id, s.queue) for s in steps] == [
        ("imagegen.submit", a, "batch"),
        ("imagegen.submit", b, "interactive"),
    ]
    for job_id in (a, b):
        job = get(rt, job_id)
        assert job is not None and job.status == "queued" and job.error_kind is None and job.finished_at is None
    deadline_a, deadline_b = get(rt, a).deadline_at, get(rt, b).deadline_at  # type: ignore[union-attr]
    assert (deadline_a - now).total_seconds() == pytest.approx(rt.settings.imagegen_default_deadline_s, abs=30)
    assert (deadline_b - now).total_seconds() == pytest.approx(600, abs=30)  # its own deadline_s
    for untouched, status in (
        (other_kind, "failed"),
        (other_provider, "failed"),
        (expired, "expired"),
        (done, "succeeded"),
    ):
        assert get(rt, untouched).status == status  # type: ignore[union-attr]
    # A second run finds nothing: the CAS moved each job exactly once.
    assert requeue_ops.retry_many(rt, error_kind="upstream_unavailable", provider="apidot") == []
    # Other statuses and windows.
    assert [s.job_id for s in requeue_ops.retry_many(rt, status="expired")] == [expired]
    assert requeue_ops.retry_many(rt, status="failed", since=timedelta(minutes=1)) == []
    assert len(requeue_ops.retry_many(rt, status="failed", limit=1)) == 1


def _set_finished(rt: Runtime, when: dict[str, datetime]) -> None:
    with rt.session() as s:
        for job_id, finished in when.items():
            s.execute(sa.update(Job).where(col(Job.id) == job_id).values(finished_at=finished))


def test_retry_many_rejects_statuses_that_cannot_be_requeued(rt: Runtime) -> None:
    for status in ("succeeded", "running", "queued", "nonsense"):
        with pytest.raises(ValueError, match="cannot be requeued"):
            requeue_ops.retry_many(rt, status=status)


def test_retry_many_resets_the_same_fields_as_admin_retry(rt: Runtime) -> None:
    failed: dict[str, Any] = dict(
        finished=10,
        submitted=50,
        error_kind="upstream_unavailable",
        error_message="502",
        error_http_status=502,
        last_error_kind="rate_limited",
        last_error_message="429",
        last_error_http_status=429,
        upstream_task_id="up-1",
        upstream_status="failed",
        progress=40,
        result=[{"url": "https://x.example/a.png", "path": None}],
        rate_limited_submits=3,
        unavailable_submits=6,
        poll_errors=2,
        submit_attempts=9,
        polls=4,
    )
    one, two = add_job(rt, "failed", **failed), add_job(rt, "failed", **failed)
    assert admin.retry(rt, one).ok
    requeue_ops.retry_many(rt, status="failed")
    clock = {"id", "updated_at", "deadline_at", "next_attempt_at", "dispatch_until"}
    rows = [get(rt, one), get(rt, two)]
    dumped = [{k: v for k, v in r.model_dump().items() if k not in clock} for r in rows if r is not None]
    assert dumped[0] == dumped[1]
    assert dumped[0]["status"] == "queued" and dumped[0]["submit_attempts"] == 9  # history kept


# --- purge --------------------------------------------------------------------------------------


def _result_file(root: Path, job_id: str, index: int = 0) -> str:
    path = root / job_id / f"{index}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"png")
    return str(path)


def _log(rt: Runtime, job_id: str, attempts: int, deliveries: int) -> None:
    with rt.session() as s:
        for _ in range(attempts):
            s.add(Attempt(job_id=job_id, provider="apidot", kind="status"))
        for n in range(deliveries):
            s.add(Delivery(job_id=job_id, attempt=n + 1))


def _count(rt: Runtime, model: type[Any], job_id: str) -> int:
    with rt.session() as s:
        return int(s.execute(sa.select(sa.func.count()).select_from(model).where(model.job_id == job_id)).scalar_one())


def test_purge_deletes_old_terminal_jobs_their_rows_and_files(rt: Runtime, tmp_path: Path) -> None:
    root = rt.settings.results_dir
    day = 86_400
    outside = tmp_path / "not-ours.png"
    outside.write_bytes(b"keep me")
    old_ok = add_job(rt, "succeeded", created=40 * day, finished=40 * day)
    with rt.session() as s:
        s.execute(
            sa.update(Job)
            .where(col(Job.id) == old_ok)
            .values(
                result=[
                    {"url": "https://u/0", "path": _result_file(root, old_ok, 0)},
                    {"url": "https://u/1", "path": _result_file(root, old_ok, 1)},
                    {"url": "https://u/2", "path": "s3://bucket/imagegen/x/2.png"},
                    {"url": "https://u/3", "path": str(outside)},  # a crafted row: never deleted
                ]
            )
        )
    _log(rt, old_ok, attempts=3, deliveries=2)
    old_failed = add_job(rt, "failed", created=40 * day, finished=35 * day, error_kind="generation_failed")
    _log(rt, old_failed, attempts=1, deliveries=0)
    recent = add_job(rt, "succeeded", created=2 * day, finished=2 * day)
    _log(rt, recent, attempts=2, deliveries=0)
    # Not ended (a stale finished_at must not matter): never purged.
    active = add_job(rt, "running", created=40 * day, finished=40 * day)
    held = add_job(rt, "held", created=40 * day, finished=40 * day, error_kind="auth_failed")

    dry = purge_ops.purge(rt, older_than=timedelta(days=30), dry_run=True, now=NOW)
    assert (dry.jobs, dry.attempts, dry.deliveries, dry.files, dry.files_kept) == (2, 4, 2, 2, 2)
    assert get(rt, old_ok) is not None and (root / old_ok / "0.png").exists()

    only_failed = purge_ops.purge(rt, older_than=timedelta(days=30), statuses={JobStatus.FAILED}, now=NOW)
    assert (only_failed.jobs, only_failed.attempts) == (1, 1)
    assert get(rt, old_failed) is None and get(rt, old_ok) is not None

    done = purge_ops.purge(rt, older_than=timedelta(days=30), now=NOW)
    assert (done.jobs, done.attempts, done.deliveries, done.files, done.files_kept) == (1, 3, 2, 2, 2)
    assert get(rt, old_ok) is None and _count(rt, Attempt, old_ok) == 0 and _count(rt, Delivery, old_ok) == 0
    assert not (root / old_ok).exists() and outside.read_bytes() == b"keep me"
    for kept in (recent, active, held):
        assert get(rt, kept) is not None
    assert _count(rt, Attempt, recent) == 2
    again = purge_ops.purge(rt, older_than=timedelta(days=30), now=NOW)
    assert again.jobs == 0


def test_purge_never_deletes_a_job_requeued_after_it_was_selected(rt: Runtime) -> None:
    job_id = add_job(rt, "failed", created=40 * 86_400, finished=40 * 86_400, error_kind="upstream_unavailable")
    where = [col(Job.status).in_([s.value for s in TERMINAL]), col(Job.finished_at) < NOW - timedelta(days=30)]
    with rt.session() as s:
        selected = list(s.scalars(sa.select(col(Job.id)).where(*where)))
    assert selected == [job_id]
    assert admin.retry(rt, job_id).ok  # an operator requeues it in between
    with rt.session() as s:
        assert purge_ops.delete_jobs(s, selected, where)[0] == 0
    assert get(rt, job_id).status == "queued"  # type: ignore[union-attr]


def test_purge_refuses_statuses_that_have_not_ended(rt: Runtime) -> None:
    with pytest.raises(ValueError, match="only terminal"):
        purge_ops.purge(rt, older_than=timedelta(days=1), statuses={JobStatus.RUNNING})
    assert purge_ops.purgeable_statuses("terminal") == TERMINAL
    assert purge_ops.purgeable_statuses("failed, canceled") == {JobStatus.FAILED, JobStatus.CANCELED}
    for bad in ("running", "", "held,failed"):
        with pytest.raises(ValueError):
            purge_ops.purgeable_statuses(bad)
