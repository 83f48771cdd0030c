"""Durable timers: every wait is a due time in the database; short ones also ride a countdown message.

Celery keeps countdown messages in worker memory (and redelivers them past the Redis visibility
timeout), so only waits up to ``IMAGEGEN_ETA_MAX_S`` become messages. Longer waits are parked as
``next_attempt_at`` with ``dispatch_until`` NULL, and the reconciler releases them when due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from config.settings import Settings

#: A message may arrive a little before its due time (clock skew between hosts): it still counts as due.
EARLY_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class Timer:
    """Column values that schedule the next attempt, and whether to publish a countdown message."""

    values: dict[str, Any]
    countdown: float | None


def schedule(now: datetime, delay_s: float, settings: Settings) -> Timer:
    """Schedule the next attempt ``delay_s`` from ``now``."""
    delay_s = max(0.0, delay_s)
    due = now + timedelta(seconds=delay_s)
    if delay_s <= settings.timers.eta_max_s:
        grace = timedelta(seconds=settings.timers.dispatch_grace_s)
        return Timer({"next_attempt_at": due, "dispatch_until": due + grace}, delay_s)
    return Timer({"next_attempt_at": due, "dispatch_until": None}, None)


def park() -> dict[str, Any]:
    """No timer and no message: the job waits for an operator or a resume."""
    return {"next_attempt_at": None, "dispatch_until": None}
