"""Task time limits and the leases that must outlive them, derived from the timeouts in ``Settings``.

Each limit is computed from what it guards, so a configuration cannot put a soft limit inside an HTTP
call (a submit killed mid-read never learns whether the upstream took it) or let a lease lapse under a
live task (a second worker would submit again and pay twice). What cannot be derived is checked by
``order_problems``, which ``Settings`` runs at start-up. Imports only the wire names, so both
``config.settings`` and the Celery-free core can use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagegen.constants import NOTIFY_BATCH_TASK, NOTIFY_TASK, POLL_TASK, RECONCILE_TASK, SUBMIT_TASK

if TYPE_CHECKING:
    from config.settings import Settings

#: (soft, hard) time limits, seconds, of the tasks whose limits do not depend on settings, and the
#: defaults that submit and poll are declared with (their messages carry the derived values).
TIME_LIMITS: dict[str, tuple[float, float]] = {
    "imagegen.enqueue": (30, 45),
    SUBMIT_TASK: (80, 90),
    POLL_TASK: (45, 60),
    RECONCILE_TASK: (50, 60),
    NOTIFY_TASK: (45, 60),
    NOTIFY_BATCH_TASK: (45, 60),
}

#: Headroom between the end of an HTTP call's timeouts and the soft limit (attempt log, DB commit).
CALL_MARGIN_S = 15.0
#: Between a soft limit and its hard limit: time for the handler to hand the job back.
HANDBACK_S = 10.0
#: A lease outlives the hard limit it guards by this much.
LEASE_MARGIN_S = 30.0
#: Room for storing result files (a local write, or an S3 upload) and the database after a download.
STORE_MARGIN_S = 30.0


def async_submit_limits(settings: Settings) -> tuple[float, float]:
    """(soft, hard) limits of a submit to an async provider: its connect and submit read timeouts plus
    headroom (the defaults, 5 + 60 s, give the declared 80 / 90 s)."""
    soft = settings.http.connect_s + settings.http.submit_read_s + CALL_MARGIN_S
    return soft, soft + HANDBACK_S


def sync_submit_limits(settings: Settings) -> tuple[float, float]:
    """(soft, hard) limits of a submit to a synchronous provider: the whole render is one call."""
    read = settings.http.openai_read_s
    return read + 30.0, read + 60.0


def submit_lease_s(settings: Settings, *, synchronous: bool) -> float:
    """A submit lease: the configured one, stretched past a synchronous call's hard limit (an async
    submit's is checked at start-up instead: ``order_problems``)."""
    if synchronous:
        return max(settings.timers.submit_lease_s, sync_submit_limits(settings)[1] + LEASE_MARGIN_S)
    return settings.timers.submit_lease_s


def finalize_time_limits(settings: Settings) -> tuple[float, float]:
    """(soft, hard) limits of ``imagegen.finalize``, so a download ``IMAGEGEN_DOWNLOAD_MAX_S`` allows fits.

    A fetch checks its budget between network operations, so it can overrun it by one connect and two
    reads (the headers, then the body chunk during which the budget ran out); storing comes after.
    """
    overrun = settings.http.connect_s + 2 * settings.http.read_s
    soft = settings.http.download_max_s + overrun + STORE_MARGIN_S
    return soft, soft + 30.0


def finalize_lease_s(settings: Settings) -> float:
    """A finalizing lease outlives the finalize task's hard time limit."""
    return max(settings.timers.submit_lease_s, finalize_time_limits(settings)[1] + LEASE_MARGIN_S)


def order_problems(settings: Settings) -> list[str]:
    """Settings whose order matters and is not derived, as one line each naming the variable."""
    connect, read = settings.http.connect_s, settings.http.read_s
    lease = settings.timers.submit_lease_s
    poll_soft, poll_hard = TIME_LIMITS[POLL_TASK]
    rules: list[tuple[str, float, str, float]] = [
        # A lease shorter than the task it guards expires under a live call: a second submit pays twice.
        ("the imagegen.submit hard time limit", async_submit_limits(settings)[1], "IMAGEGEN_SUBMIT_LEASE_S", lease),
        ("the imagegen.poll hard time limit", poll_hard, "IMAGEGEN_SUBMIT_LEASE_S", lease),
        # A status call cut by the poll's soft limit is only retried later, but it should not happen.
        (
            "IMAGEGEN_HTTP_CONNECT_TIMEOUT_S + IMAGEGEN_HTTP_READ_TIMEOUT_S",
            connect + read,
            "the imagegen.poll soft time limit",
            poll_soft,
        ),
    ]
    return [
        f"{large_name} ({large:g} s) must be above {small_name} ({small:g} s)"
        for small_name, small, large_name, large in rules
        if not small < large
    ]
