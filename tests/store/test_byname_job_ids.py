"""A job id sent by name names one tenant's one request: any other is refused and changes nothing."""

from __future__ import annotations

import uuid

from imagegen.byname import enqueue_message
from imagegen.runtime import Runtime
from imagegen.store import repo


def test_another_tenants_job_id_is_refused_not_handed_back(rt: Runtime) -> None:
    job_id = str(uuid.uuid4())
    job, answer = enqueue_message(rt, [], {"request": {"prompt": "b's prompt", "tenant": "b"}, "job_id": job_id})
    assert job is not None and answer == {"job_id": job_id}
    job, answer = enqueue_message(rt, [], {"request": {"prompt": "b's prompt", "tenant": "a"}, "job_id": job_id})
    assert job is None and "job_id" in answer["error"]["message"]
    with rt.session() as s:
        row = repo.get_job(s, job_id)
    assert row is not None and (row.tenant, row.status) == ("b", "queued")


def test_a_different_request_under_a_known_job_id_is_refused(rt: Runtime) -> None:
    job_id = str(uuid.uuid4())
    enqueue_message(rt, [], {"request": {"prompt": "first"}, "job_id": job_id})
    job, answer = enqueue_message(rt, [], {"request": {"prompt": "second"}, "job_id": job_id})
    assert job is None and "error" in answer
    again, answer = enqueue_message(rt, [], {"request": {"prompt": "first"}, "job_id": job_id})
    assert again is not None and again.id == job_id and answer == {"job_id": job_id}  # a redelivery
