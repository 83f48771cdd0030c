"""The producer API: validate, write the ``queued`` row, then publish the submit message after commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from config.groups import Timers
from imagegen.errors import IdempotencyConflict, JobIdConflict
from imagegen.ids import new_job_id
from imagegen.messages import Publisher, submit_step
from imagegen.request import DEFAULT_TENANT, ImageRequest, check_callback_url
from imagegen.routes import NoMapping, hop_request
from imagegen.runtime import Runtime, get_runtime
from imagegen.store import repo
from imagegen.store.models import Batch, Job
from imagegen.store.transitions import JobStatus

log = logging.getLogger(__name__)


def same_request(stored: dict[str, Any], request: ImageRequest) -> bool:
    """Whether a job's stored request is ``request`` (validated dicts equal, or its fallback hop's).

    ``priority`` is left out: it says which queue serves the job, not what is asked, and the batch entry
    points default it differently from the single-job ones.
    """
    asked = request.to_dict()
    candidates = [asked]
    for target in request.fallback or ():  # a job that moved down its route stores that hop's request
        try:
            candidates.append(hop_request(candidates[-1], target))
        except NoMapping:
            break
    strip = {"priority"}
    have = {k: v for k, v in stored.items() if k not in strip}
    return any({k: v for k, v in c.items() if k not in strip} == have for c in candidates)


def tenant_of(request: ImageRequest) -> str:
    """The tenant a request's job belongs to (``default`` when it names none)."""
    return request.tenant or DEFAULT_TENANT


def _job_values(
    timers: Timers, request: ImageRequest, *, now: datetime, job_id: str | None, batch_id: str | None
) -> dict[str, Any]:
    """The attributes of a new ``queued`` job: due now, its message assumed in flight for the grace time."""
    deadline_s = request.deadline_s or timers.default_deadline_s
    return {
        "id": job_id or new_job_id(),
        "batch_id": batch_id,
        "provider": request.provider,
        "model": request.model,
        "request": request.to_dict(),
        "job_metadata": request.metadata,
        "idempotency_key": request.idempotency_key,
        "tenant": tenant_of(request),
        "priority": request.priority,
        "callback_url": request.callback_url,
        "status": JobStatus.QUEUED.value,
        "next_attempt_at": now,
        "dispatch_until": now + timedelta(seconds=timers.dispatch_grace_s),
        "created_at": now,
        "updated_at": now,
        "deadline_at": now + timedelta(seconds=deadline_s),
    }


def build_job(
    rt: Runtime,
    request: ImageRequest,
    *,
    now: datetime,
    job_id: str | None = None,
    batch_id: str | None = None,
    batch_callback: bool = False,
) -> Job:
    """A ``queued`` row for ``request``, due now, with its message assumed in flight for the grace time
    (``batch_callback``: its batch has a ``callback_url``)."""
    values = _job_values(rt.settings.timers, request, now=now, job_id=job_id, batch_id=batch_id)
    return Job(**values, batch_callback=batch_callback)


#: Column name of each ``Job`` attribute (they differ for ``job_metadata``, stored as ``metadata``).
_COLUMN_OF = {attr.key: attr.columns[0].name for attr in sa.inspect(Job).column_attrs}


def job_rows(
    rt: Runtime, requests: Sequence[ImageRequest], *, now: datetime, batch_id: str, batch_callback: bool = False
) -> list[dict[str, Any]]:
    """The ``queued`` rows of ``requests`` as column values for one Core INSERT.

    Building an ORM object costs more per job than inserting it, so only the first row is built as a
    ``Job`` (for every column's default); the others copy it and set what differs.
    """
    if not requests:
        return []
    first = build_job(rt, requests[0], now=now, batch_id=batch_id, batch_callback=batch_callback)
    template = {column: getattr(first, key) for key, column in _COLUMN_OF.items()}
    timers = rt.settings.timers
    out = []
    for request in requests:
        values = _job_values(timers, request, now=now, job_id=None, batch_id=batch_id)
        out.append({**template, **{_COLUMN_OF[key]: value for key, value in values.items()}})
    return out


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job as batch intake returns it: what naming it and publishing its submit need, not an ORM object."""

    id: str
    batch_id: str | None
    priority: str
    provider: str
    status: str
    #: Inserted by this call (its submit is to be published); False: an earlier job of the same key.
    created: bool = True

    @classmethod
    def of(cls, job: Job, *, created: bool = True) -> QueuedJob:
        """The record of a job read or created one at a time."""
        return cls(job.id, job.batch_id, job.priority, job.provider, job.status, created)


def create_job(
    rt: Runtime,
    request: ImageRequest,
    *,
    job_id: str | None = None,
    batch_id: str | None = None,
    batch_callback: bool = False,
) -> tuple[Job, bool]:
    """Insert the job; returns ``(job, created)``. A repeated idempotency key or job id returns the existing job.

    Raises ``IdempotencyConflict`` when the key's job was created for a different request. Keys are
    scoped to the request's tenant: another tenant's job is never found (nor returned) by its key.
    """
    job = build_job(rt, request, now=rt.now(), job_id=job_id, batch_id=batch_id, batch_callback=batch_callback)
    try:
        with rt.session() as s:
            s.add(job)
        return job, True
    except IntegrityError:
        # The UNIQUE constraint decided the race: exactly one insert with this key (or id) won.
        with rt.session() as s:
            key = request.idempotency_key
            existing = repo.get_job_by_idempotency_key(s, key, tenant=tenant_of(request)) if key else None
            existing = existing or (repo.get_job(s, job_id) if job_id else None)
        if existing is None:
            raise
        key = request.idempotency_key
        if key is not None and existing.idempotency_key == key:
            if not same_request(existing.request, request):
                raise IdempotencyConflict(key) from None
        elif existing.tenant != tenant_of(request) or not same_request(existing.request, request):
            # Found by its id alone: a repeated message is the same request of the same tenant, nothing else.
            raise JobIdConflict(existing.id) from None
        return existing, False


def create_batch(
    rt: Runtime, requests: Sequence[ImageRequest], *, callback_url: str | None = None
) -> tuple[str, list[QueuedJob]]:
    """Insert many jobs and their batch row under one batch id, in one INSERT of the jobs when no
    idempotency key collides. ``callback_url`` hears ``batch.finished`` (``RequestInvalid`` naming it if
    it is bad)."""
    check_callback_url(callback_url, allow_private_urls=rt.settings.http.allow_private_urls)
    batch_id = new_job_id()
    now = rt.now()
    hooked = callback_url is not None
    rows = job_rows(rt, requests, now=now, batch_id=batch_id, batch_callback=hooked)
    try:
        with rt.session() as s:
            s.add(_batch_row(batch_id, requests, callback_url, now))
            s.flush()  # the batch row before the jobs naming it
            repo.insert_jobs(s, rows)
        return batch_id, [QueuedJob(r["id"], batch_id, r["priority"], r["provider"], r["status"]) for r in rows]
    except IntegrityError:
        pass  # some idempotency key exists already: insert one by one, keeping the existing jobs
    check_idempotency(rt, requests)  # a conflict anywhere refuses the whole batch before any insert
    with rt.session() as s:  # first, so that every job naming the batch finds its row
        s.add(_batch_row(batch_id, requests, callback_url, now))
    out = []
    for request in requests:
        job, created = create_job(rt, request, batch_id=batch_id, batch_callback=hooked)
        out.append(QueuedJob.of(job, created=created))
    if not any(j.created for j in out):
        with rt.session() as s:  # every job was an earlier batch's: this one has nothing to finish
            s.execute(sa.delete(Batch).where(col(Batch.id) == batch_id))
        earlier = {j.batch_id for j in out}
        if len(earlier) == 1 and None not in earlier:
            # A replay of one earlier batch (its keys, its requests): answer with that batch, whose
            # counts and notification (to its own callback_url) are these jobs'.
            return str(earlier.pop()), out
    return batch_id, out


def _batch_row(batch_id: str, requests: Sequence[ImageRequest], callback_url: str | None, now: datetime) -> Batch:
    tenants = {tenant_of(r) for r in requests}
    tenant = tenants.pop() if len(tenants) == 1 else DEFAULT_TENANT  # an admin's batch for several tenants
    return Batch(id=batch_id, tenant=tenant, callback_url=callback_url, created_at=now)


def check_idempotency(rt: Runtime, requests: Sequence[ImageRequest]) -> None:
    """Raise ``IdempotencyConflict`` if a request's key names a job created for a different request."""
    first: dict[str, ImageRequest] = {}  # by tenant:key (a tenant never contains ':')
    for request in requests:
        # Within the batch too: the jobs are inserted one by one after a collision, and a conflict found
        # then would leave the earlier lines' jobs queued although the whole batch is refused.
        if request.idempotency_key is not None:
            seen = first.setdefault(f"{tenant_of(request)}:{request.idempotency_key}", request)
            if seen is not request and not same_request(seen.to_dict(), request):
                raise IdempotencyConflict(request.idempotency_key)
    with rt.session() as s:
        for request in requests:
            if request.idempotency_key is None:
                continue
            existing = repo.get_job_by_idempotency_key(s, request.idempotency_key, tenant=tenant_of(request))
            if existing is not None and not same_request(existing.request, request):
                raise IdempotencyConflict(request.idempotency_key)


#: Submits per ``publish_many`` call. A broker failure leaves the delivery of at most one call's messages
#: unknown, and the log line can still say from which job on nothing is known to be sent.
SUBMITS_PER_CALL = 1_000


def publish_submits(publisher: Publisher, jobs: Iterable[Job | QueuedJob]) -> None:
    """Publish the submit messages of freshly queued jobs, each once. A failure is logged, not raised: the
    reconciler releases any queued job whose message never arrived.

    The first failure stops: a broker that refused one message refuses the next, and each try can cost
    a connect timeout (a 5,000-job batch would wait minutes for nothing). One line says so, without a
    traceback: the rows are committed, so nothing is lost.
    """
    # A key repeated inside one batch names one job twice; it needs one message.
    queued = list({job.id: job for job in jobs if job.status == JobStatus.QUEUED}.values())
    steps = [submit_step(job.id, job.priority, job.provider) for job in queued]
    for start in range(0, len(steps), SUBMITS_PER_CALL):
        try:
            publisher.publish_many(steps[start : start + SUBMITS_PER_CALL])
        except Exception as exc:  # broker down: the durable rows are enough
            log.warning(
                "could not publish the submit of %d queued job(s), from %s on (%s: %s); the reconciler will"
                " release them",
                len(queued) - start,
                queued[start].id,
                type(exc).__name__,
                str(exc)[:200],
            )
            return


def enqueue(request: ImageRequest, *, publisher: Publisher | None = None, runtime: Runtime | None = None) -> str:
    """Validate-and-queue one request; returns the job id (the existing one for a repeated idempotency key)."""
    rt = runtime or get_runtime()
    job, created = create_job(rt, request)
    if created:
        publish_submits(publisher or default_publisher(), [job])
    return job.id


def enqueue_batch(
    requests: Sequence[ImageRequest],
    *,
    callback_url: str | None = None,
    publisher: Publisher | None = None,
    runtime: Runtime | None = None,
) -> tuple[str, list[str]]:
    """Queue many requests under one batch id; returns ``(batch_id, job ids)``. ``callback_url`` gets one
    signed ``batch.finished`` notification each time every job of the batch has ended."""
    rt = runtime or get_runtime()
    batch_id, jobs = create_batch(rt, requests, callback_url=callback_url)
    publish_submits(publisher or default_publisher(), [j for j in jobs if j.created])
    return batch_id, [j.id for j in jobs]


def default_publisher() -> Publisher:
    """The Celery publisher from ``worker/`` (imported lazily so the core never imports Celery)."""
    import importlib

    module = importlib.import_module("worker.publisher")
    publisher: Publisher = module.CeleryPublisher()
    return publisher
