"""Argument checks for the CLI: enumerated filters, ``--timeout``, and job ids (full or short).

Each bad value is one line on stderr and exit 2 (``output.fail``), before anything is read or written.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

import click
from sqlalchemy.orm import Session

from imagegen.cli.output import fail
from imagegen.constants import PROVIDERS
from imagegen.errors import ErrorKind
from imagegen.ids import is_job_id
from imagegen.request import TENANT_RULE, is_tenant
from imagegen.store import repo
from imagegen.store.transitions import JobStatus

#: The shortest id prefix looked up (``imagegen jobs`` prints 8 characters).
MIN_SHORT_ID = 4


def timeout_callback(_ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Click callback: ``--timeout`` is a positive number of seconds."""
    if value is not None and not value > 0:
        fail(f"{param.opts[0]}: must be a positive number of seconds (got {value:g})")
    return value


def timeout_needs_wait(timeout: float | None, wait: bool) -> None:
    if timeout is not None and not wait:
        fail("--timeout: needs --wait (without it the command returns at once)")


class Sessions(Protocol):
    """What looking a job up needs: a ``Runtime``, or the CLI's database-only ``Database``."""

    def session(self) -> AbstractContextManager[Session]: ...


def existing_job(rt: Sessions, job_id: str) -> Any:
    """The job named by a full id, or by a unique prefix of one (the short ids ``imagegen jobs`` prints)."""
    prefix = job_id.strip().lower()
    with rt.session() as s:
        if is_job_id(prefix):
            job = repo.get_job(s, prefix)
        elif len(prefix) >= MIN_SHORT_ID and all(c in "0123456789abcdef-" for c in prefix):
            ids = repo.job_ids_with_prefix(s, prefix, limit=6)
            if len(ids) > 1:
                more = ", ..." if len(ids) > 5 else ""
                fail(f"job_id: {job_id!r} is ambiguous: {', '.join(ids[:5])}{more}")
            job = repo.get_job(s, ids[0]) if ids else None
        else:
            fail(f"job_id: {job_id!r} is not a job id (a UUID, or at least {MIN_SHORT_ID} of its first characters)")
    if job is None:
        fail(f"job_id: no job {job_id}")
    return job


def status_callback(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    statuses = [s.value for s in JobStatus]
    if value is not None and value not in statuses:
        fail(f"{param.opts[0]}: unknown status {value!r} (one of {', '.join(statuses)})")
    return value


def provider_callback(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a known provider name or nothing (exit 2 with one line otherwise)."""
    if value is not None and value not in PROVIDERS:
        fail(f"{param.opts[0]}: unknown provider {value!r} (one of {', '.join(PROVIDERS)})")
    return value


def tenant_callback(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a tenant name or nothing (exit 2 with one line otherwise)."""
    if value is not None and not is_tenant(value):
        fail(f"{param.opts[0]}: {TENANT_RULE}")
    return value


def error_kind_callback(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a known error kind or nothing (exit 2 with one line otherwise)."""
    kinds = [k.value for k in ErrorKind]
    if value is not None and value not in kinds:
        fail(f"{param.opts[0]}: unknown error kind {value!r} (one of {', '.join(kinds)})")
    return value
