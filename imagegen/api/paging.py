"""Keyset pagination of job lists (``GET /v1/jobs``, ``GET /v1/batches/{id}``): limits and opaque cursors.

A cursor is the ``(created_at, id)`` of the last job of a page, base64url-encoded. Paging on from it
asks the store for what sorts after that key, so jobs inserted meanwhile (all newer) never shift a
later page: no job is repeated or skipped, as an OFFSET would do. Callers must treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query

from imagegen.api.validation import invalid, problem
from imagegen.ids import is_job_id
from imagegen.store.models import Job

DEFAULT_PAGE = 50
MAX_PAGE = 500
#: Far above any cursor we hand out: a longer one is not ours, and is refused before decoding.
_MAX_CURSOR = 200

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Jobs per page (at most {MAX_PAGE})")]
Cursor = Annotated[str | None, Query(description="The `next` of the previous page (opaque)")]
CreatedBound = Annotated[
    str | None, Query(description="ISO 8601 (without an offset: UTC)", json_schema_extra={"format": "date-time"})
]
Key = tuple[datetime, str]


def encode_cursor(job: Job) -> str:
    """The cursor that pages on after ``job``."""
    raw = json.dumps([job.created_at.astimezone(UTC).isoformat(), job.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Key:
    """The ``(created_at, id)`` a cursor names, or a 422 naming ``cursor``."""
    try:
        if len(cursor) > _MAX_CURSOR:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, job_id = json.loads(raw)
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None or not is_job_id(job_id):
            raise ValueError("not a key")
        return at.astimezone(UTC), job_id
    except (ValueError, TypeError, binascii.Error, OverflowError, RecursionError):
        raise invalid([problem(("query", "cursor"), "cursor: not a cursor this API gave out")]) from None


def after(cursor: str | None) -> Key | None:
    """The store key of ``cursor`` (None: the first page)."""
    return decode_cursor(cursor) if cursor else None


def page(jobs: Sequence[Job], limit: int) -> tuple[Sequence[Job], str | None]:
    """Split ``limit + 1`` fetched jobs into the page and the cursor of the next one (None: the last page)."""
    if len(jobs) <= limit:
        return jobs, None
    return jobs[:limit], encode_cursor(jobs[limit - 1])


def created_bound(text: str | None, name: str) -> datetime | None:
    """A ``created_after``/``created_before`` filter: ISO 8601 (without an offset: UTC), or a 422 naming it.

    Parsed by ``datetime.fromisoformat``, not pydantic, which would also take a number as a Unix time.
    """
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        msg = f"{name}: must be an ISO 8601 date-time such as 2026-05-01T12:00:00Z"
        raise invalid([problem(("query", name), msg)]) from None
