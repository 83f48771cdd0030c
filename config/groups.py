"""Typed value groups of the settings (``settings.backoff``, ``.budgets``, ``.timers``, ``.polling``, ``.http``).

The environment stays flat (one ``IMAGEGEN_*`` variable per knob, names unchanged); the code reads
small immutable groups instead, so a call site takes the one thing it needs (``settings.backoff``)
and never re-passes base and cap, and a reader sees which knobs belong together. Like httpx's
``Timeout``/``Limits`` and arq's ``RedisSettings``: data only, no behaviour beyond defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter between retries: ``min(cap_s, base_s * 2**(n-1))``."""

    base_s: float
    cap_s: float


@dataclass(frozen=True)
class Budgets:
    """How many failures of each kind a job may spend before it ends (or holds)."""

    rate_limited_submits: int
    unavailable_submits: int
    #: POSTs repeated after an unknown outcome (may pay twice; at_least_once only).
    unknown_submits: int
    poll_errors: int
    #: Definite download failures (404/403/410, not an image), then ``result_unavailable``.
    download_errors: int
    #: Failed download attempts of any kind, then ``result_unavailable``.
    download_attempts: int
    notify_attempts: int


@dataclass(frozen=True)
class Timers:
    """Durable timers, leases and the reconciler's pace."""

    #: Waits up to this long ride a countdown message; longer ones are due times in the database.
    eta_max_s: float
    #: How long a published message may take to arrive before the reconciler presumes it lost.
    dispatch_grace_s: float
    reconcile_interval_s: float
    #: Rows the reconciler releases per kind and run.
    release_batch: int
    submit_lease_s: float
    #: While a key is paused, one held job is retried this often as a probe (0 = never).
    pause_probe_s: float
    default_deadline_s: float


@dataclass(frozen=True)
class Polling:
    """The informed poll schedule's bounds, and how webhooks stretch it."""

    min_s: float
    cap_s: float
    #: With webhooks on, polls are a safety net: waits this many times longer...
    webhook_factor: float
    #: ...up to this cap.
    webhook_cap_s: float
    learn_durations: bool


@dataclass(frozen=True)
class Http:
    """Timeouts and limits of our HTTP calls: upstream APIs, result downloads, callbacks."""

    connect_s: float
    read_s: float
    #: A submit POST to an async provider: past it the outcome is unknown, so it is generous.
    submit_read_s: float
    #: OpenAI answers only when the image is done.
    openai_read_s: float
    #: The whole download of one job's result files.
    download_max_s: float
    max_result_bytes: int
    allow_private_urls: bool
