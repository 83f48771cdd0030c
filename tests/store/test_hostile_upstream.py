"""Hostile upstream answers (random status codes, random JSON, junk bytes, huge strings) driven through the
real submit and poll code against a real database: each ends in a clear state; nothing raises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegen.constants import FINALIZE_TASK
from imagegen.errors import ErrorKind
from imagegen.jobs.finalize import finalize_job
from imagegen.jobs.poll import poll_job
from imagegen.jobs.submit import submit_job
from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job
from imagegen.store.transitions import JobStatus
from tests.support.upstream import scripted_runtime, serve

pytestmark = pytest.mark.store

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
# Shapes close to the real ones, so the fuzzing reaches deep into the parsers.
near_miss = st.fixed_dictionaries(
    {"code": st.sampled_from([0, 200, 400, 429, 500, "200", None, True])},
    optional={
        "data": st.fixed_dictionaries(
            {},
            optional={
                "task_id": st.one_of(st.text(max_size=300), st.integers(), st.none()),
                "status": st.sampled_from(["finished", "failed", "running", "processing", "", "FINISHED"])
                | st.integers(),
                "progress": st.one_of(st.integers(), st.floats(), st.text(max_size=5)),
                "files": st.lists(st.fixed_dictionaries({}, optional={"file_url": st.text(max_size=30)})) | json_values,
                "output": json_values,
                "error_message": st.text(max_size=2000) | st.none(),
            },
        ),
        "error": json_values,
        "detail": json_values,
    },
)
bodies = st.one_of(
    near_miss.map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.just("x" * 200_000),
)
statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 402, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504, 599])
headers = st.sampled_from(
    [
        {},
        {"Retry-After": "1"},
        {"Retry-After": "junk"},
        {"Retry-After": "-5"},
        {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
        {"Retry-After": "1e400"},
    ]
)

ALLOWED_KINDS = {k.value for k in ErrorKind} | {None}


@pytest.fixture
def hostile_rt(migrated_url: str) -> Iterator[Runtime]:
    rt = scripted_runtime(migrated_url)
    yield rt
    rt.close()


def _job_in(rt: Runtime, status: str, **values: Any) -> str:
    job, _ = create_job(rt, ImageRequest(prompt="fuzz"))
    with rt.session() as s:
        s.execute(sa.update(Job).where(Job.id == job.id).values(status=status, **values))
    return job.id


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=statuses, body=bodies, hdrs=headers)
def test_submit_survives_any_answer(hostile_rt: Runtime, status: int, body: str, hdrs: dict[str, str]) -> None:
    serve(hostile_rt, lambda request: httpx.Response(status, text=body, headers=hdrs))
    job_id = _job_in(hostile_rt, "queued")
    submit_job(hostile_rt, job_id)  # must not raise
    with hostile_rt.session() as s:
        job = repo.get_job(s, job_id)
    assert job is not None
    assert job.status in {"queued", "running", "failed", "held"}
    assert job.error_kind in ALLOWED_KINDS and job.last_error_kind in ALLOWED_KINDS
    assert job.submit_attempts == 1
    if job.status == "running":
        assert job.upstream_task_id
    with hostile_rt.session() as s:
        s.execute(sa.text("UPDATE provider_state SET paused = false"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=statuses, body=bodies, hdrs=headers)
def test_poll_survives_any_answer(hostile_rt: Runtime, status: int, body: str, hdrs: dict[str, str]) -> None:
    serve(hostile_rt, lambda request: httpx.Response(status, text=body, headers=hdrs))
    now = hostile_rt.now()
    job_id = _job_in(hostile_rt, "running", upstream_task_id="t-1", next_attempt_at=now, submitted_at=now)
    for step in poll_job(hostile_rt, job_id):  # must not raise
        if step.task == FINALIZE_TASK:
            finalize_job(hostile_rt, step.job_id)  # the result download a finished task leads to
    with hostile_rt.session() as s:
        job = repo.get_job(s, job_id)
    assert job is not None
    assert job.status in {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.HELD}
    assert job.submit_attempts == 0, "a poll never resubmits"
    assert job.polls == 1 and job.error_kind in ALLOWED_KINDS
    if job.status == "succeeded":
        assert job.result and all(r["url"].startswith(("http://", "https://")) for r in job.result)
    with hostile_rt.session() as s:
        s.execute(sa.text("UPDATE provider_state SET paused = false"))
