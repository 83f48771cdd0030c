"""Statistics over a time window: counts, throughput, latency percentiles, calls per job and credits.

Also the human durations the commands take (``--since 7d``, ``--older-than 30d``)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from imagegen.jobview import iso
from imagegen.ops import pricing
from imagegen.runtime import Runtime
from imagegen.store.models import Job
from imagegen.store.transitions import ACTIVE, JobStatus

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+\Z")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``30s``, ``30m``, ``2h``, ``30d``, ``2w`` or combinations such as ``1h30m``.

    Raises ``ValueError`` with a message fit to show after the flag's name.
    """
    cleaned = text.strip().lower().replace(" ", "")
    if not _DURATION.match(cleaned):
        raise ValueError(f"{text!r} is not a duration (use a number and a unit s, m, h, d or w, e.g. 30m, 2h, 30d)")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if not math.isfinite(seconds) or seconds > 100 * 365 * 86_400:
        raise ValueError(f"{text!r} is too long")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """A compact spelling of a window, e.g. ``24h``, ``90m``, ``30d``, ``45s``."""
    seconds = delta.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Percentiles:
    """p50/p95 (seconds) of a set of durations; ``None`` when the set is empty."""

    count: int
    p50: float | None
    p95: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Percentiles:
        """Percentiles by linear interpolation between the closest ranks (numpy's default)."""
        ordered = sorted(values)
        return cls(len(ordered), percentile(ordered, 0.50), percentile(ordered, 0.95))


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted values, interpolated; ``None`` for no values."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Stats:
    """What happened in a window ``[since, until]``, optionally for one provider.

    ``created_*``: jobs created in the window, by their status now. ``active``: every job not yet
    ended (whatever its age). ``finished_*``, rates, durations, per-job means and credits: jobs that
    ended in the window.
    """

    since: datetime
    until: datetime
    provider: str | None
    created_by_status: dict[str, int]
    active_by_status: dict[str, int]
    held_by_error_kind: dict[str, int]
    finished_by_status: dict[str, int]
    finished_by_error_kind: dict[str, int]
    total_seconds: Percentiles
    upstream_seconds: Percentiles
    mean_submit_attempts: float | None
    mean_polls: float | None
    credits_by_tier: dict[str, int] = field(default_factory=dict)

    @property
    def minutes(self) -> float:
        """Length of the window in minutes."""
        return max((self.until - self.since).total_seconds() / 60.0, 1e-9)

    @property
    def finished(self) -> int:
        """Jobs that ended in the window."""
        return sum(self.finished_by_status.values())

    @property
    def finished_per_minute(self) -> float:
        """Jobs ended per minute, averaged over the window."""
        return self.finished / self.minutes

    @property
    def succeeded_per_minute(self) -> float:
        """Jobs succeeded per minute, averaged over the window."""
        return self.finished_by_status.get(JobStatus.SUCCEEDED.value, 0) / self.minutes

    @property
    def credits(self) -> int:
        """Credits spent by the price table (succeeded APIDot jobs)."""
        return sum(self.credits_by_tier.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``imagegen stats --json``."""
        return {
            "window": {"since": iso(self.since), "until": iso(self.until), "minutes": round(self.minutes, 3)},
            "provider": self.provider,
            "created": {"total": sum(self.created_by_status.values()), "by_status": self.created_by_status},
            "active": {"by_status": self.active_by_status, "held_by_error_kind": self.held_by_error_kind},
            "finished": {
                "total": self.finished,
                "by_status": self.finished_by_status,
                "by_error_kind": self.finished_by_error_kind,
                "per_minute": round(self.finished_per_minute, 4),
                "succeeded_per_minute": round(self.succeeded_per_minute, 4),
            },
            "durations_s": {
                "created_to_finished": asdict(self.total_seconds),
                "submitted_to_finished": asdict(self.upstream_seconds),
            },
            "per_job": {"submit_attempts": self.mean_submit_attempts, "polls": self.mean_polls},
            "credits": {"total": self.credits, "by_tier": self.credits_by_tier},
        }


def stats(rt: Runtime, *, since: timedelta, provider: str | None = None, now: datetime | None = None) -> Stats:
    """Statistics over the last ``since`` (see ``Stats`` for which jobs each figure covers)."""
    until = now or rt.now()
    start = until - since
    mine: list[ColumnElement[bool]] = [col(Job.provider) == provider] if provider else []
    ended = [col(Job.finished_at) >= start, col(Job.finished_at) <= until, *mine]
    succeeded = [*ended, col(Job.status) == JobStatus.SUCCEEDED.value]
    with rt.session() as s:
        created = _count_by(s, col(Job.status), [col(Job.created_at) >= start, col(Job.created_at) <= until, *mine])
        active = _count_by(s, col(Job.status), [col(Job.status).in_([a.value for a in ACTIVE]), *mine])
        held = _count_by(s, col(Job.error_kind), [col(Job.status) == JobStatus.HELD.value, *mine])
        finished = _count_by(s, col(Job.status), ended)
        kinds = _count_by(s, col(Job.error_kind), [*ended, col(Job.error_kind).is_not(None)])
        means = s.execute(
            sa.select(sa.func.avg(col(Job.submit_attempts)), sa.func.avg(col(Job.polls))).where(*ended)
        ).one()
        times = s.execute(
            sa.select(col(Job.created_at), col(Job.submitted_at), col(Job.finished_at)).where(*succeeded)
        ).all()
        tiers = _credit_tiers(s, succeeded) if provider in (None, pricing.PRICED_PROVIDER) else {}
    return Stats(
        since=start,
        until=until,
        provider=provider,
        created_by_status=created,
        active_by_status=active,
        held_by_error_kind=held,
        finished_by_status=finished,
        finished_by_error_kind=kinds,
        total_seconds=Percentiles.of((f - c).total_seconds() for c, _, f in times if f is not None),
        upstream_seconds=Percentiles.of(
            (f - sub).total_seconds() for _, sub, f in times if f is not None and sub is not None
        ),
        mean_submit_attempts=_rounded(means[0]),
        mean_polls=_rounded(means[1]),
        credits_by_tier=tiers,
    )


def _count_by(s: Session, column: Any, where: Sequence[ColumnElement[bool]]) -> dict[str, int]:
    rows = s.execute(sa.select(column, sa.func.count()).where(*where).group_by(column)).all()
    return {str(key): int(n) for key, n in sorted(rows, key=lambda r: str(r[0])) if key is not None}


def _credit_tiers(s: Session, succeeded: Sequence[ColumnElement[bool]]) -> dict[str, int]:
    """Credits per ``quality/resolution`` tier, grouped in SQL (no request bodies are loaded)."""
    quality = col(Job.request)["quality"].as_string()
    resolution = col(Job.request)["resolution"].as_string()
    rows = s.execute(
        sa.select(quality, resolution, sa.func.count())
        .where(*succeeded, col(Job.provider) == pricing.PRICED_PROVIDER)
        .group_by(quality, resolution)
    ).all()
    out: dict[str, int] = defaultdict(int)
    for q, r, n in rows:
        priced_q, priced_r = pricing.tier(q, r)
        out[f"{priced_q}/{priced_r}"] += pricing.CREDITS[priced_q][priced_r] * int(n)
    return dict(sorted(out.items()))


def _rounded(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
