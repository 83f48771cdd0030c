"""The submit path against a real database and a scripted upstream (httpx MockTransport): which failures
spend which budget, how many POSTs a job can make when their outcome is unknown, and the upstream task id
logged before the database records it."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from botocore.exceptions import EndpointConnectionError

from imagegen.jobs.reconciler import reconcile
from imagegen.jobs.submit import submit_job
from imagegen.net.urls import FetchPolicy
from imagegen.producer import create_job
from imagegen.providers.openai import OpenAIProvider
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from tests.support.recorder import Recorder
from tests.support.upstream import raising, scripted_runtime, serve

pytestmark = pytest.mark.store

TINY_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def make_rt(migrated_url: str) -> Iterator[Callable[..., Runtime]]:
    made: list[Runtime] = []

    def make(**settings: Any) -> Runtime:
        rt = scripted_runtime(
            migrated_url,
            imagegen_learn_durations=False,
            imagegen_backoff_base_s=0.01,
            imagegen_backoff_cap_s=0.01,
            **settings,
        )
        with rt.session() as s:
            s.execute(sa.text("UPDATE provider_state SET paused = false"))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def run_until_settled(rt: Runtime, job_id: str, limit: int = 20) -> Job:
    """Serve the job's submit messages one after the other (due at once), as the worker would."""
    for _ in range(limit):
        with rt.session() as s:
            s.execute(sa.update(Job).where(Job.id == job_id).values(next_attempt_at=None))
        submit_job(rt, job_id)
        with rt.session() as s:
            job = repo.get_job(s, job_id)
        assert job is not None
        if job.status != "queued":
            return job
    raise AssertionError("the job never settled")


def new_job(rt: Runtime) -> str:
    job, _ = create_job(rt, ImageRequest(prompt="a lighthouse"))
    return job.id


NOTHING_SENT = [httpx.ConnectError("refused"), httpx.ConnectTimeout("connect"), httpx.PoolTimeout("pool")]
MAYBE_SENT = [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("server disconnected"), httpx.WriteError("pipe")]


@pytest.mark.parametrize("policy", ["at_least_once", "at_most_once"])
@pytest.mark.parametrize("exc", NOTHING_SENT, ids=lambda e: type(e).__name__)
def test_nothing_sent_spends_the_unavailable_budget_under_both_policies(
    make_rt: Callable[..., Runtime], policy: str, exc: Exception
) -> None:
    rt = make_rt(imagegen_submit_policy=policy)
    upstream = serve(rt, raising(exc))
    job = run_until_settled(rt, new_job(rt))
    assert (job.status, job.error_kind) == ("failed", "upstream_unavailable")
    assert (len(upstream.requests), job.unavailable_submits, job.unknown_submits) == (6, 6, 0)


@pytest.mark.parametrize("exc", MAYBE_SENT, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(("policy", "allowed", "posts"), [("at_least_once", 1, 2), ("at_least_once", 3, 4),
                                                          ("at_least_once", 0, 1), ("at_most_once", 3, 1)])  # fmt: skip
def test_maybe_sent_is_bounded_by_the_unknown_budget(
    make_rt: Callable[..., Runtime], exc: Exception, policy: str, allowed: int, posts: int
) -> None:
    rt = make_rt(imagegen_submit_policy=policy, imagegen_max_submits_unknown=allowed)
    upstream = serve(rt, raising(exc))
    job_id = new_job(rt)
    job = run_until_settled(rt, job_id)
    assert (job.status, job.error_kind) == ("failed", "submit_outcome_unknown")
    assert (len(upstream.requests), job.unknown_submits, job.unavailable_submits) == (posts, posts, 0)
    assert {r.headers["Idempotency-Key"] for r in upstream.requests} == {job_id}
    assert "may have accepted the request" in (job.error_message or "")
    with rt.session() as s:
        kinds = [a.error_kind for a in repo.list_attempts(s, job_id) if a.kind == "submit"]
    assert kinds == ["submit_outcome_unknown"] * posts


def test_the_two_budgets_are_separate(make_rt: Callable[..., Runtime]) -> None:
    # Five refused connections, one read timeout, then an answer: the job still succeeds.
    script: list[Exception | None] = [httpx.ConnectError("x")] * 5 + [httpx.ReadTimeout("slow"), None]

    def answer(request: httpx.Request) -> httpx.Response:
        exc = script.pop(0)
        if exc is not None:
            raise exc
        return httpx.Response(200, json={"code": 200, "data": {"task_id": "t-7", "status": "not_started"}})

    rt = make_rt()
    upstream = serve(rt, answer)
    job = run_until_settled(rt, new_job(rt))
    assert (job.status, job.upstream_task_id) == ("running", "t-7")
    assert (len(upstream.requests), job.unavailable_submits, job.unknown_submits) == (7, 5, 1)


def test_a_gateway_502_is_maybe_sent_but_a_503_is_an_answer(make_rt: Callable[..., Runtime]) -> None:
    rt = make_rt(imagegen_submit_policy="at_most_once")
    serve(rt, lambda r: httpx.Response(503, json={"detail": "overloaded"}))
    job_id = new_job(rt)
    submit_job(rt, job_id)
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    assert job is not None and (job.status, job.unavailable_submits, job.unknown_submits) == ("queued", 1, 0)
    serve(rt, lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    job = run_until_settled(rt, job_id)
    assert (job.status, job.error_kind, job.error_http_status) == ("failed", "submit_outcome_unknown", 502)


def test_the_task_id_is_logged_before_the_database_has_it(
    make_rt: Callable[..., Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    rt = make_rt()
    serve(rt, lambda r: httpx.Response(200, json={"code": 200, "data": {"task_id": "t-logged"}}))
    job_id = new_job(rt)
    seen_in_db: list[str | None] = []

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "t-logged" in record.getMessage():
                with rt.session() as s:
                    job = repo.get_job(s, job_id)
                seen_in_db.append(job.upstream_task_id if job else "missing")

    probe = Probe(level=logging.INFO)
    logger = logging.getLogger("imagegen.jobs.submit")
    logger.addHandler(probe)
    try:
        with caplog.at_level(logging.INFO, logger="imagegen.jobs.submit"):
            submit_job(rt, job_id)
    finally:
        logger.removeHandler(probe)
    assert seen_in_db == [None], "logged once, while the row did not have the id yet"
    assert any(r.levelno == logging.INFO and job_id in r.getMessage() for r in caplog.records)
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    assert job is not None and job.upstream_task_id == "t-logged"


def _die_mid_post(rt: Runtime, job_id: str) -> None:
    """What a worker killed during its POST leaves behind: submitting, in flight, the lease run out."""
    with rt.session() as s:
        s.execute(
            sa.update(Job)
            .where(Job.id == job_id)
            .values(
                status="submitting",
                lease_token="dead",
                lease_until=rt.now() - timedelta(seconds=1),
                submit_inflight_at=rt.now() - timedelta(seconds=60),
                next_attempt_at=None,
                dispatch_until=None,
            )
        )


@pytest.mark.parametrize("allowed", [0, 1, 2])
def test_a_worker_dying_mid_post_spends_the_unknown_budget(make_rt: Callable[..., Runtime], allowed: int) -> None:
    # A request that kills every worker mid-POST (OOM on the answer, a hard time limit) must not be POSTed
    # forever under at_least_once: each recovered in-flight submit may have created a paid task.
    rt = make_rt(imagegen_submit_policy="at_least_once", imagegen_max_submits_unknown=allowed)
    job_id = new_job(rt)
    deaths = 0
    job: Job | None = None
    for _ in range(10):
        _die_mid_post(rt, job_id)
        deaths += 1
        reconcile(rt)
        with rt.session() as s:
            job = repo.get_job(s, job_id)
        assert job is not None
        if job.status != "queued":
            break
    assert job is not None and (job.status, job.error_kind) == ("failed", "submit_outcome_unknown")
    assert (deaths, job.unknown_submits) == (allowed + 1, allowed + 1)


def test_an_ambiguous_post_and_a_dead_worker_share_the_budget(make_rt: Callable[..., Runtime]) -> None:
    rt = make_rt(imagegen_submit_policy="at_least_once", imagegen_max_submits_unknown=1)
    upstream = serve(rt, raising(httpx.ReadTimeout("slow")))
    job_id = new_job(rt)
    submit_job(rt, job_id)  # one POST with an unknown outcome: requeued, unknown_submits 1
    _die_mid_post(rt, job_id)  # the resubmit's worker dies mid-POST: a second unknown outcome
    reconcile(rt)
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    assert job is not None and len(upstream.requests) == 1
    assert (job.status, job.error_kind, job.unknown_submits) == ("failed", "submit_outcome_unknown", 2)


def test_a_worker_dying_before_its_post_spends_nothing(make_rt: Callable[..., Runtime]) -> None:
    rt = make_rt(imagegen_submit_policy="at_most_once", imagegen_max_submits_unknown=0)
    job_id = new_job(rt)
    _die_mid_post(rt, job_id)
    with rt.session() as s:
        s.execute(sa.update(Job).where(Job.id == job_id).values(submit_inflight_at=None))
    reconcile(rt)
    with rt.session() as s:
        job = repo.get_job(s, job_id)
    assert job is not None and (job.status, job.unknown_submits) == ("queued", 0)


class BrokenBucket:
    """A result store whose service is down the way boto3 reports it (not an OSError)."""

    def put(self, key: str, data: bytes, content_type: str) -> str:
        raise EndpointConnectionError(endpoint_url="https://s3.example")

    def get(self, key: str) -> bytes:
        raise FileNotFoundError(key)

    def locate(self, path: str, *, job_id: str | None = None) -> None:
        return None

    def read(self, path: str, *, job_id: str) -> None:
        return None


def test_a_synchronous_answer_that_cannot_be_stored_is_paid_once(make_rt: Callable[..., Runtime]) -> None:
    # OpenAI answered with the picture (paid); storing it fails with an error that is not an OSError.
    # The job must end there, not stay submitting until its lease lapses and be POSTed (paid) again.
    rt = make_rt(imagegen_submit_policy="at_least_once", imagegen_max_submits_unknown=3)
    png = base64.b64encode(TINY_PNG).decode()
    upstream = Recorder(lambda r: httpx.Response(200, json={"created": 1, "data": [{"b64_json": png}]}))
    client = httpx.Client(transport=httpx.MockTransport(upstream))
    rt.providers = {
        "openai": OpenAIProvider(client, base_url="https://openai.example/v1", api_key="k", fetch_policy=FetchPolicy())
    }
    rt.store = BrokenBucket()
    job, _ = create_job(rt, ImageRequest(prompt="a lighthouse", provider="openai"))
    for _ in range(5):
        with contextlib.suppress(Exception):  # the task shell: the task fails, its message is acked
            submit_job(rt, job.id)
        with rt.session() as s:  # the lease runs out; the reconciler recovers the submit
            s.execute(sa.update(Job).where(Job.id == job.id).values(lease_until=rt.now() - timedelta(seconds=1)))
        reconcile(rt)
        with rt.session() as s:
            s.execute(sa.update(Job).where(Job.id == job.id).values(next_attempt_at=None))
    with rt.session() as s:
        row = repo.get_job(s, job.id)
    assert row is not None and len(upstream.requests) == 1, f"{len(upstream.requests)} paid POSTs for one job"
    assert (row.status, row.error_kind) == ("failed", "upstream_unavailable")
    assert "storing the result failed" in (row.error_message or "")
