"""Keyset pages of ``repo.list_jobs`` (what ``GET /v1/jobs`` serves) while other sessions insert jobs.

Runs on SQLite, and on PostgreSQL with TEST_DATABASE_URL (the store tier is marked ``db``).
"""

from __future__ import annotations

import threading
from datetime import timedelta

from imagegen.api.paging import decode_cursor, page
from imagegen.ids import new_job_id
from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.models import Job


def _seed(rt: Runtime, n: int, tenant: str) -> set[str]:
    """``n`` jobs over a few timestamps, many sharing one (as a batch's jobs do)."""
    base = rt.now() - timedelta(hours=1)
    jobs = []
    for i in range(n):
        job = Job(
            id=new_job_id(),
            tenant=tenant,
            provider="apidot",
            model="gpt-image-2",
            request={"prompt": str(i)},
            status="queued",
            created_at=base + timedelta(seconds=i % 5),
            updated_at=base,
            deadline_at=base + timedelta(days=1),
        )
        jobs.append(job)
    with rt.session() as s:
        s.add_all(jobs)
    return {j.id for j in jobs}


def _read_all(rt: Runtime, tenant: str | None, limit: int) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        with rt.read_session() as s:
            found = repo.list_jobs(s, tenant=tenant, after=decode_cursor(cursor) if cursor else None, limit=limit + 1)
            jobs, cursor = page(found, limit)
            seen += [j.id for j in jobs]
        if cursor is None:
            return seen


def test_paging_under_concurrent_inserts_repeats_and_skips_nothing(rt: Runtime) -> None:
    mine = _seed(rt, 60, "a")
    theirs = _seed(rt, 20, "b")
    stop = threading.Event()
    inserted: list[str] = []

    def insert() -> None:
        while not stop.is_set():
            for tenant in ("a", "b"):
                job, _ = create_job(rt, ImageRequest(prompt="meanwhile", tenant=tenant))
                inserted.append(job.id)

    writer = threading.Thread(target=insert)
    writer.start()
    try:
        seen_a = _read_all(rt, "a", limit=7)
        seen_all = _read_all(rt, None, limit=9)
    finally:
        stop.set()
        writer.join()
    assert inserted  # the writer really ran while we paged
    # Every job present at the start, each exactly once; jobs inserted meanwhile are newer, so either
    # on the first page or not at all, never in the middle pushing others out.
    assert len(seen_a) == len(set(seen_a)) and mine <= set(seen_a) and not theirs & set(seen_a)
    assert len(seen_all) == len(set(seen_all)) and mine | theirs <= set(seen_all)
    with rt.read_session() as s:
        assert {j.tenant for j in repo.list_jobs(s, tenant="a", limit=10_000)} == {"a"}
