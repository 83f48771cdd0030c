"""Batch notifications against a real database: the batch row, the one claim per outcome (also when two
workers end the last two jobs at once), reopening on retry, the reconciler's catch-up, delivery and its
log, and what a job ending costs in statements with and without a batch callback."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col

from config.settings import Settings
from imagegen.constants import NOTIFY_BATCH_TASK, NOTIFY_QUEUE
from imagegen.errors import RequestInvalid
from imagegen.jobs.reconciler import reconcile
from imagegen.jobs.submit import submit_job
from imagegen.ops import actions
from imagegen.ops.requeue import retry_many
from imagegen.producer import create_batch, create_job, enqueue_batch
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Batch, Job
from imagegen.store.transitions import JobStatus as S
from imagegen.store.transitions import transition
from imagegen.webhooks import batches as notices
from tests.support.receiver import Receiver
from tests.support.recorder import RecordingPublisher
from tests.support.upstream import scripted_runtime, serve

pytestmark = pytest.mark.store

ACCEPTED = {"code": 200, "data": {"task_id": "t-1", "status": "not_started"}}
HOOK = "https://hooks.example/batch"


def _batch(rt: Runtime, n: int = 2, callback_url: str | None = HOOK, **fields: Any) -> tuple[str, list[Job]]:
    requests = [ImageRequest(prompt=f"p{i}", **fields) for i in range(n)]
    batch_id, queued = create_batch(rt, requests, callback_url=callback_url)
    with rt.read_session() as s:
        return batch_id, repo.get_jobs(s, [j.id for j in queued])


def _end(rt: Runtime, job_id: str, target: S = S.CANCELED) -> None:
    with rt.session() as s:
        assert transition(s, job_id, source={S.QUEUED}, target=target)


def _row(rt: Runtime, batch_id: str) -> Batch:
    with rt.session() as s:
        batch = repo.get_batch(s, batch_id)
    assert batch is not None
    return batch


def test_a_batch_row_is_written_with_its_jobs(rt: Runtime) -> None:
    batch_id, jobs = _batch(rt, 3, tenant="t1")
    row = _row(rt, batch_id)
    assert (row.callback_url, row.tenant, row.notify_status, row.finished_at) == (HOOK, "t1", None, None)
    assert all(j.batch_callback for j in jobs)
    plain_id, plain = _batch(rt, 2, callback_url=None)
    assert _row(rt, plain_id).callback_url is None and not any(j.batch_callback for j in plain)


def test_a_bad_callback_url_writes_nothing(rt: Runtime) -> None:
    for url in ("ftp://x.example/h", "not a url", "https://a\x00b.example/", "https://x.example/" + "a" * 3000):
        with pytest.raises(RequestInvalid) as caught:
            enqueue_batch([ImageRequest(prompt="p")], callback_url=url, runtime=rt, publisher=RecordingPublisher())
        assert [e.field for e in caught.value.errors] == ["callback_url"]
    with rt.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0


def test_one_claim_when_the_last_job_ends_none_before(rt: Runtime) -> None:
    batch_id, (a, b) = _batch(rt)
    _end(rt, a.id)
    assert notices.claim(rt, batch_id) is None, "a job is still queued"
    _end(rt, b.id, S.EXPIRED)
    step = notices.claim(rt, batch_id)
    assert step is not None and (step.task, step.job_id, step.queue) == (NOTIFY_BATCH_TASK, batch_id, NOTIFY_QUEUE)
    assert notices.claim(rt, batch_id) is None, "claimed once per outcome"
    row = _row(rt, batch_id)
    assert row.notify_status == "pending" and row.finished_at is not None
    plain_id, jobs = _batch(rt, 1, callback_url=None)
    _end(rt, jobs[0].id)
    assert notices.claim(rt, plain_id) is None, "no callback, nothing to claim"


def _finish_and_claim(url: str, job_id: str, batch_id: str, barrier: Any, results: Any) -> None:
    rt = Runtime.create(Settings(database_url=url, redis_url="redis://unused:1/0"), check_schema=False)
    try:
        barrier.wait()
        with rt.session() as s:
            transition(s, job_id, source={S.QUEUED}, target=S.CANCELED)
        # The claim comes after the ending committed, as follow_up runs it: whichever commit is last,
        # its claim sees every job terminal.
        results.put(notices.claim(rt, batch_id) is not None)
    finally:
        rt.close()


def test_two_workers_ending_the_last_two_jobs_at_once_claim_once(rt: Runtime, migrated_url: str) -> None:
    ctx = mp.get_context("spawn")
    for _ in range(3):
        batch_id, jobs = _batch(rt, 2)
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(target=_finish_and_claim, args=(migrated_url, j.id, batch_id, barrier, results)) for j in jobs
        ]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        assert sorted(outcomes) == [False, True]


def test_two_sessions_committing_the_last_two_endings_together_claim_once(rt: Runtime) -> None:
    # Both endings are in flight before either commits (each transaction sees the other job active);
    # the claims run after the commits and exactly one wins. SQLite serializes writers, so there the
    # second ending waits for the first: the commits are still both done before the claims.
    batch_id, (a, b) = _batch(rt)
    if rt.engine.dialect.name == "sqlite":
        _end(rt, a.id)
        _end(rt, b.id)
    else:
        with rt.session() as s1, rt.session() as s2:
            assert transition(s1, a.id, source={S.QUEUED}, target=S.CANCELED)
            assert transition(s2, b.id, source={S.QUEUED}, target=S.CANCELED)
    claims = [notices.claim(rt, batch_id), notices.claim(rt, batch_id)]
    assert sum(c is not None for c in claims) == 1


def test_a_retry_reopens_the_batch_and_the_next_ending_is_a_new_outcome(rt: Runtime) -> None:
    batch_id, (a, b) = _batch(rt)
    _end(rt, a.id)
    _end(rt, b.id)
    assert notices.claim(rt, batch_id) is not None
    first = notices.message_id(_row(rt, batch_id))
    assert actions.retry(rt, a.id).ok
    reopened = _row(rt, batch_id)
    assert (reopened.notify_status, reopened.finished_at, reopened.notify_attempts) == (None, None, 0)
    assert notices.claim(rt, batch_id) is None, "a job is queued again"
    _end(rt, a.id)
    assert notices.claim(rt, batch_id) is not None
    assert notices.message_id(_row(rt, batch_id)) != first
    assert notices.claim(rt, batch_id) is None, "claimed already: nothing reopened it"
    # Bulk requeue reopens too.
    assert sorted(s.job_id for s in retry_many(rt, status="canceled")) == sorted([a.id, b.id])
    assert _row(rt, batch_id).notify_status is None


def test_a_claim_that_raced_a_retry_is_handed_back_not_sent(rt: Runtime) -> None:
    # A claim that read the jobs before a retry committed can leave the batch pending with a queued job
    # (PostgreSQL's read committed); the delivery finds it unfinished, sends nothing, and reopens it.
    receiver = Receiver()
    rt.settings = rt.settings.model_copy(update={"imagegen_allow_private_urls": True})
    batch_id, (a, b) = _batch(rt, callback_url=receiver.url)
    _end(rt, a.id)
    with rt.session() as s:
        s.execute(sa.update(Batch).where(col(Batch.id) == batch_id).values(notify_status="pending"))
    assert notices.deliver(rt, batch_id) is None
    assert receiver.calls == [] and _row(rt, batch_id).notify_status is None
    _end(rt, b.id)
    assert notices.claim(rt, batch_id) is not None
    receiver.close()


def test_the_reconciler_claims_a_missed_ending_and_resends_a_lost_message(rt: Runtime) -> None:
    batch_id, (a, b) = _batch(rt)
    _end(rt, a.id)
    _end(rt, b.id)  # no follow-up: the process "died" between the ending and the claim
    steps = [s for s in reconcile(rt).steps if s.task == NOTIFY_BATCH_TASK]
    assert [s.job_id for s in steps] == [batch_id]
    assert not [s for s in reconcile(rt).steps if s.task == NOTIFY_BATCH_TASK], "claimed once"
    past = rt.now() - timedelta(seconds=1)
    with rt.session() as s:  # the notify message was lost (a flushed Redis): its grace passed
        s.execute(sa.update(Batch).where(col(Batch.id) == batch_id).values(notify_next_at=past))
    steps = [s for s in reconcile(rt).steps if s.task == NOTIFY_BATCH_TASK]
    assert [s.job_id for s in steps] == [batch_id]


def test_delivery_is_signed_logged_and_retried_then_given_up(migrated_url: str) -> None:
    receiver = Receiver(fail_first=100)
    rt = scripted_runtime(
        migrated_url,
        imagegen_allow_private_urls=True,
        imagegen_notify_max_attempts=3,
        imagegen_webhook_secret="whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    )
    try:
        batch_id, (a, b) = _batch(rt, callback_url=receiver.url)
        _end(rt, a.id)
        _end(rt, b.id, S.EXPIRED)
        assert notices.claim(rt, batch_id) is not None
        retry = notices.deliver(rt, batch_id)
        assert retry is not None and retry.task == NOTIFY_BATCH_TASK and retry.countdown > 0
        assert notices.deliver(rt, batch_id) is not None
        assert notices.deliver(rt, batch_id) is None, "the third failure is the last attempt"
        row = _row(rt, batch_id)
        assert (row.notify_status, row.notify_attempts) == ("failed", 3)
        log = notices.deliveries(rt, batch_id)
        assert [(d.attempt, d.http_status, d.batch_id, d.job_id) for d in log] == [
            (n, 500, batch_id, None) for n in (1, 2, 3)
        ]
        ids = {h["webhook-id"] for h, _ in receiver.calls}
        assert ids == {notices.message_id(row)} and all("webhook-signature" in h for h, _ in receiver.calls)
        assert notices.deliver(rt, batch_id) is None and len(receiver.calls) == 3, "never sent after giving up"
    finally:
        receiver.close()
        rt.close()


# --- what a job ending costs ---------------------------------------------------------------------------


@pytest.fixture
def counted(migrated_url: str) -> Iterator[tuple[Runtime, Callable[[], int]]]:
    rt = scripted_runtime(migrated_url, imagegen_learn_durations=False)
    count = [0]

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):
            count[0] += 1

    def taken() -> int:
        n, count[0] = count[0], 0
        return n

    sa.event.listen(rt.engine, "before_cursor_execute", on_statement)
    yield rt, taken
    sa.event.remove(rt.engine, "before_cursor_execute", on_statement)
    rt.close()


def _served(rt: Runtime, taken: Callable[[], int], job_id: str) -> tuple[str, int]:
    taken()
    submit_job(rt, job_id)
    statements = taken()
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    taken()
    assert job is not None
    return job.status, statements


def test_a_job_ending_costs_one_statement_more_only_when_its_batch_has_a_callback(
    counted: tuple[Runtime, Callable[[], int]],
) -> None:
    rt, taken = counted
    serve(rt, httpx.Response(400, json={"code": 400, "message": "invalid prompt"}))
    single, _ = create_job(rt, ImageRequest(prompt="alone"))
    _, (plain,) = _batch(rt, 1, callback_url=None)
    batch_id, (called,) = _batch(rt, 1)
    ends = {name: _served(rt, taken, job.id) for name, job in (("job", single), ("plain", plain), ("hook", called))}
    assert {status for status, _ in ends.values()} == {"failed"}
    assert ends["plain"][1] == ends["job"][1], "a batch without a callback costs nothing more"
    assert ends["hook"][1] == ends["job"][1] + 1, "one CAS on the batch row"
    assert _row(rt, batch_id).notify_status == "pending"


@pytest.mark.parametrize(("expected_s", "more"), [("1", 0), ("300", 1)])
def test_a_message_that_does_not_end_the_job_costs_at_most_one_statement_more(
    counted: tuple[Runtime, Callable[[], int]], expected_s: str, more: int
) -> None:
    # A first poll due soon is a countdown message for the same job: the job goes on, nothing is asked.
    # One due later than IMAGEGEN_ETA_MAX_S is a timer in the row and no message: the claim is tried.
    rt, taken = counted
    rt.settings = rt.settings.model_copy(update={"imagegen_expected_duration_s": expected_s})
    serve(rt, httpx.Response(200, json=ACCEPTED))
    single, _ = create_job(rt, ImageRequest(prompt="alone"))
    _, (called,) = _batch(rt, 1)
    alone, hooked = _served(rt, taken, single.id), _served(rt, taken, called.id)
    assert alone[0] == hooked[0] == "running"
    assert hooked[1] == alone[1] + more
