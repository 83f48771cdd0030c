"""Time limits of a result download (the ``imagegen.finalize`` task and its lease), derived from its budget.

Derived rather than configured, so the task can never be killed inside a download that
``IMAGEGEN_DOWNLOAD_MAX_S`` allows, and the reconciler never hands back a finalizer that is still alive.
"""

from __future__ import annotations

from config.settings import Settings

#: Room for storing the files (a local write, or an S3 upload) and the database, after the download.
STORE_MARGIN_S = 30.0


def finalize_time_limits(settings: Settings) -> tuple[float, float]:
    """(soft, hard) time limits of a finalize message.

    A fetch checks its budget between network operations, so it can overrun it by one connect and two
    reads (the headers, then the body chunk during which the budget ran out); storing comes after.
    """
    overrun = settings.imagegen_http_connect_timeout_s + 2 * settings.imagegen_http_read_timeout_s
    soft = settings.imagegen_download_max_s + overrun + STORE_MARGIN_S
    return soft, soft + 30.0


def finalize_lease_s(settings: Settings) -> float:
    """A finalizing lease outlives the finalize task's hard time limit."""
    return max(settings.imagegen_submit_lease_s, finalize_time_limits(settings)[1] + 30.0)
