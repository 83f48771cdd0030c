"""SQLModel tables: jobs, batches, the upstream attempt and delivery logs, and per-provider state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from imagegen.request import DEFAULT_TENANT, MAX_TENANT


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timestamps stored as UTC and always returned timezone-aware (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, UTC, aware."""
    return datetime.now(UTC)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class Job(SQLModel, table=True):
    """One image-generation request plus everything learned while serving it."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The reconciler's due-work scans: status first, then the timer.
        sa.Index("ix_jobs_status_next_attempt_at", "status", "next_attempt_at"),
        # Ended jobs still owed a caller notification (few rows ever have a callback_url).
        sa.Index(
            "ix_jobs_callback_pending",
            "notify_status",
            "status",
            sqlite_where=sa.text("callback_url IS NOT NULL"),
            postgresql_where=sa.text("callback_url IS NOT NULL"),
        ),
        # "Is any job of this batch still active?", asked when a job of a batch with a callback ends: a few
        # index probes. Only such jobs are in it, so other jobs pay nothing to keep it.
        sa.Index(
            "ix_jobs_batch_callback_status",
            "batch_id",
            "status",
            sqlite_where=sa.text("batch_callback = 1"),
            postgresql_where=sa.text("batch_callback"),
        ),
        # The HTTP list of one tenant's jobs: newest first, keyset-paginated on (created_at, id).
        sa.Index("ix_jobs_tenant_created_at", "tenant", "created_at", "id"),
        # An idempotency key names one job per tenant: one tenant's key can neither read nor block another's.
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
    )

    id: str = Field(primary_key=True, max_length=36)
    batch_id: str | None = Field(default=None, max_length=36, index=True)
    #: The job's batch has a ``callback_url``: its endings ask whether the batch finished (others never do).
    batch_callback: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    provider: str = Field(max_length=32)
    model: str = Field(max_length=200)
    request: dict[str, Any] = Field(sa_type=sa.JSON)
    # "metadata" is reserved by SQLAlchemy's declarative base, hence the attribute name.
    job_metadata: dict[str, Any] | None = Field(default=None, sa_column=sa.Column("metadata", sa.JSON))
    idempotency_key: str | None = Field(default=None, max_length=200)
    #: Whose job this is: the caller's token tenant (HTTP), or the request's ``tenant`` (CLI, producer, by name).
    tenant: str = Field(
        default=DEFAULT_TENANT, max_length=MAX_TENANT, sa_column_kwargs={"server_default": DEFAULT_TENANT}
    )
    priority: str = Field(default="interactive", max_length=16)
    status: str = Field(max_length=16, index=True)

    upstream_task_id: str | None = Field(default=None, max_length=200, index=True)
    upstream_status: str | None = Field(default=None, max_length=64)
    progress: int | None = None
    result: list[dict[str, Any]] | None = Field(default=None, sa_type=sa.JSON)
    #: Token usage reported by providers that report it (OpenAI).
    usage: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)

    #: Every upstream submit call and every status call, failed ones included.
    submit_attempts: int = 0
    polls: int = 0
    #: Budget counters: 429 submits, 5xx/transport submits, consecutive failing polls.
    rate_limited_submits: int = 0
    unavailable_submits: int = 0
    poll_errors: int = 0
    #: Submit calls whose outcome is unknown (the request may have reached the upstream and been paid).
    unknown_submits: int = 0
    #: Failed downloads of a finished task's result files (their own budget, apart from poll errors).
    download_errors: int = 0
    #: Why a queued job with no timer waits (``slot``: the provider key's in-flight cap); NULL otherwise.
    wait_reason: str | None = Field(default=None, max_length=16)

    #: When the next submit or poll is due (the durable timer; Redis holds at most a copy of it).
    next_attempt_at: datetime | None = _ts(index=True)
    #: The job holds a reserved slot of its provider's rate limiter (it waited for it; see ``providers.limits``).
    rate_reserved: bool = False
    #: Until when a published message is believed in flight; NULL = parked, nothing in flight.
    dispatch_until: datetime | None = _ts()
    #: Lease of the worker that holds the job in ``submitting``/``finalizing``.
    lease_token: str | None = Field(default=None, max_length=36)
    lease_until: datetime | None = _ts()
    #: Set (committed) just before the upstream POST: a lease that expires with this set may have paid.
    submit_inflight_at: datetime | None = _ts()

    #: The caller's own callback (a copy of request.callback_url, so the reconciler can query it) and
    #: its delivery state: NULL (none due) → pending → delivered | failed.
    callback_url: str | None = Field(default=None, max_length=2048)
    notify_status: str | None = Field(default=None, max_length=16, index=True)
    notify_attempts: int = 0
    notify_next_at: datetime | None = _ts()

    error_kind: str | None = Field(default=None, max_length=32, index=True)
    error_message: str | None = None
    error_http_status: int | None = None
    last_error_kind: str | None = Field(default=None, max_length=32)
    last_error_message: str | None = None
    last_error_http_status: int | None = None

    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    submitted_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    deadline_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)


class Batch(SQLModel, table=True):
    """Jobs queued together under one id, and the delivery state of the batch's ``batch.finished`` notification."""

    __tablename__ = "batches"
    __table_args__ = (
        # The reconciler's scans: open batches that may have finished, and pending deliveries whose message
        # was lost (only batches with a callback_url are ever notified).
        sa.Index(
            "ix_batches_notify",
            "notify_status",
            "notify_next_at",
            sqlite_where=sa.text("callback_url IS NOT NULL"),
            postgresql_where=sa.text("callback_url IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    #: Whose batch this is: the tenant its requests share (``default`` when they name several).
    tenant: str = Field(default=DEFAULT_TENANT, max_length=MAX_TENANT)
    callback_url: str | None = Field(default=None, max_length=2048)
    #: NULL (not finished, or reopened by a retry) → pending → delivered | failed.
    notify_status: str | None = Field(default=None, max_length=16)
    notify_attempts: int = 0
    notify_next_at: datetime | None = _ts()
    #: When every job of the batch was found terminal: the outcome notified (NULL while it is open).
    finished_at: datetime | None = _ts()
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Attempt(SQLModel, table=True):
    """One upstream HTTP call made for a job: what an operator reads to see exactly what happened."""

    __tablename__ = "attempts"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=36, index=True)
    provider: str = Field(max_length=32)
    kind: str = Field(max_length=16)  # submit | status
    upstream_task_id: str | None = Field(default=None, max_length=200)
    http_status: int | None = None
    duration_ms: int = 0
    error_kind: str | None = Field(default=None, max_length=32)
    message: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Delivery(SQLModel, table=True):
    """One attempt to notify a caller's ``callback_url`` that its job ended, or that its batch finished."""

    __tablename__ = "deliveries"

    id: int | None = Field(default=None, primary_key=True)
    #: Exactly one of the two is set: a job's notification, or a batch's.
    job_id: str | None = Field(default=None, max_length=36, index=True)
    batch_id: str | None = Field(default=None, max_length=36, index=True)
    attempt: int
    http_status: int | None = None
    duration_ms: int = 0
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ProviderState(SQLModel, table=True):
    """Whether a provider key is paused; lives in the DB so a flushed Redis cannot lift a pause."""

    __tablename__ = "provider_state"

    provider: str = Field(primary_key=True, max_length=32)
    paused: bool = False
    reason: str | None = Field(default=None, max_length=32)
    message: str | None = None
    paused_at: datetime | None = _ts()
    #: The job currently sent as a probe while paused (IMAGEGEN_PAUSE_PROBE_S), and when.
    probe_job_id: str | None = Field(default=None, max_length=36)
    probe_at: datetime | None = _ts()
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


#: The tables for Core statements on hot paths (no ORM unit-of-work or bulk-update machinery).
JOBS: sa.Table = Job.__table__  # type: ignore[attr-defined]
ATTEMPTS: sa.Table = Attempt.__table__  # type: ignore[attr-defined]
BATCHES: sa.Table = Batch.__table__  # type: ignore[attr-defined]
