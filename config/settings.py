"""Typed settings read from the environment (README, 'Configuration'); nothing else reads ``os.environ``."""

from __future__ import annotations

import base64
import binascii
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config.groups import Backoff, Budgets, Http, Polling, Timers
from config.limits import order_problems
from imagegen.constants import PROVIDERS
from imagegen.request import DEFAULT_TENANT, TENANT_RULE, is_tenant

#: Tier means from the provider docs, 1K resolution: where the first poll of a job aims.
DEFAULT_EXPECTED_DURATIONS: dict[str, float] = {
    "*/*/low/*": 70.0,
    "*/*/medium/*": 120.0,
    "*/*/high/*": 276.0,
    "*/*/*/*": 120.0,
}


#: Upper bound for any duration setting (ten years): larger ones overflow datetime arithmetic.
MAX_SETTING_S = 10 * 365 * 86_400

#: Upper bound for an expected duration: anything longer is a typo, and timers must stay finite.
MAX_EXPECTED_DURATION_S = 86_400.0


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "imagegen"


class Settings(BaseSettings):
    """Every knob of imagegen-queue, with working defaults. Field names map to upper-case env vars."""

    # ``inf``/``nan`` parse as floats, and no timer or timedelta downstream can hold them.
    # hide_input_in_errors: a ValidationError's text would otherwise quote the input (tokens, keys, URLs
    # with passwords) to whoever builds Settings directly and prints the error.
    model_config = SettingsConfigDict(
        env_ignore_empty=True, extra="ignore", case_sensitive=False, allow_inf_nan=False, hide_input_in_errors=True
    )

    # --- services -------------------------------------------------------------------------------
    redis_url: str = "redis://localhost:6379/0"
    database_url: str | None = None
    imagegen_home: Path = Field(default_factory=_default_home)

    # --- providers (keys are secrets: never logged, never stored, never in task arguments) --------
    apidot_api_key: SecretStr = SecretStr("")
    apidot_base_url: str = "https://api.apidot.ai"
    openai_api_key: SecretStr = SecretStr("")
    openai_base_url: str = "https://api.openai.com/v1"
    image2_api_key: SecretStr = SecretStr("")
    image2_base_url: str = "https://image2.vip/api/v1"
    apidot_webhook_secret: SecretStr = SecretStr("")
    imagegen_webhook_secret: SecretStr = SecretStr("")
    imagegen_public_url: str | None = None
    #: Key for the per-job tokens in the callback URLs we give providers (falls back to the webhook
    #: secrets, then to the API key, so every process derives the same tokens without configuration).
    imagegen_callback_token_secret: SecretStr = SecretStr("")
    imagegen_results_dir: Path | None = None
    #: S3-compatible result storage (used instead of the local directory when a bucket is set);
    #: credentials come from the usual AWS_* variables, read by boto3 itself.
    imagegen_s3_bucket: str | None = None
    imagegen_s3_prefix: str = "imagegen/"
    imagegen_s3_endpoint_url: str | None = None
    imagegen_s3_region: str | None = None
    #: How long the presigned URL of ``GET /v1/jobs/{id}/images/{n}`` works (SigV4 allows up to 7 days).
    imagegen_s3_presign_s: int = Field(default=3600, gt=0, le=7 * 86_400)
    #: Largest result file we copy (bytes).
    imagegen_max_result_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    #: The whole download of one job's result files may take this long (the finalize task's time limits
    #: are derived from it); a slower download is a transient failure.
    imagegen_download_max_s: float = Field(default=120.0, gt=0, le=3600)
    #: Definite download failures (404/403/410, bytes that are not an image) before ``result_unavailable``.
    imagegen_max_download_errors: int = Field(default=3, ge=1)
    #: Failed download attempts in all (5xx, timeouts, too slow... and the definite ones) before
    #: ``result_unavailable``: a bounded loop, with growing backoff and no status call in between.
    imagegen_max_download_attempts: int = Field(default=8, ge=1)

    # --- HTTP timeouts (seconds) ----------------------------------------------------------------
    imagegen_http_connect_timeout_s: float = 5.0
    imagegen_http_read_timeout_s: float = 30.0
    #: The read timeout of a submit POST to an async provider (status calls keep the one above): past it
    #: the outcome is unknown, so it is generous.
    imagegen_submit_read_timeout_s: float = Field(default=60.0, gt=0)
    #: OpenAI answers only when the image is done (≈ 70–280 s): its calls get their own read timeout.
    imagegen_openai_read_timeout_s: float = Field(default=600.0, gt=0)

    # --- budgets and backoff --------------------------------------------------------------------
    imagegen_max_submits_rate_limited: int = Field(default=10, ge=1)
    imagegen_max_submits_unavailable: int = Field(default=6, ge=1)
    #: Times a submit whose outcome is unknown (it may have created a task) is POSTed again under
    #: at_least_once; 0 never repeats one. Under at_most_once it never is.
    imagegen_max_submits_unknown: int = Field(default=1, ge=0)
    imagegen_max_poll_errors: int = Field(default=10, ge=1)
    imagegen_backoff_base_s: float = Field(default=1.0, gt=0)
    imagegen_backoff_cap_s: float = Field(default=60.0, gt=0)
    imagegen_default_deadline_s: float = Field(default=3600.0, gt=0)

    # --- polling --------------------------------------------------------------------------------
    #: One number for all jobs, or a JSON map keyed "provider/model/quality/resolution" with * wildcards.
    imagegen_expected_duration_s: str | None = None
    imagegen_poll_min_s: float = Field(default=2.0, ge=0)
    imagegen_poll_cap_s: float = Field(default=60.0, gt=0)
    #: Waits up to this long are countdown messages on the poll queue; longer ones are due times in the DB.
    imagegen_eta_max_s: float = Field(default=60.0, gt=0)

    # --- webhooks and caller notifications ------------------------------------------------------
    #: With IMAGEGEN_PUBLIC_URL set, polls are only a safety net: waits are this many times longer...
    imagegen_webhook_poll_factor: float = Field(default=4.0, ge=1)
    #: ...up to this cap (the webhook may never come).
    imagegen_webhook_poll_cap_s: float = Field(default=300.0, gt=0)
    imagegen_notify_max_attempts: int = Field(default=8, ge=1)
    #: Tolerance for APIDot's X-Webhook-Timestamp (its webhook docs reject timestamps more than 300 s off).
    imagegen_webhook_tolerance_s: float = Field(default=300.0, gt=0)

    # --- scheduling, leases, submit policy ------------------------------------------------------
    imagegen_reconcile_interval_s: float = Field(default=5.0, gt=0)
    imagegen_submit_lease_s: float = Field(default=120.0, gt=0)
    #: How long a published message may take to arrive before the reconciler assumes it was lost.
    imagegen_dispatch_grace_s: float = Field(default=60.0, gt=0)
    imagegen_submit_policy: Literal["at_least_once", "at_most_once"] = "at_least_once"
    imagegen_release_batch: int = Field(default=500, ge=1)
    #: While a provider key is paused, retry one held job this often as a probe (0 = never).
    imagegen_pause_probe_s: float = Field(default=0.0, ge=0)

    # --- global limits per provider key (shared by every worker) --------------------------------
    #: JSON: {"apidot": {"rate_per_s": 5, "burst": 5, "max_in_flight": 500}}; missing = unlimited.
    imagegen_provider_limits: str | None = None
    #: Learn expected durations from finished jobs (a running median per provider/model/quality/resolution).
    imagegen_learn_durations: bool = True

    # --- Celery ---------------------------------------------------------------------------------
    imagegen_visibility_timeout_s: int = Field(default=3600, ge=60)
    imagegen_worker_eta_task_limit: int = Field(default=1000, ge=1)
    #: Soft shutdown on SIGTERM: how long in-flight late-ack messages get to finish or be requeued.
    imagegen_soft_shutdown_s: float = Field(default=10.0, ge=0)

    # --- safety and logging ---------------------------------------------------------------------
    imagegen_allow_private_urls: bool = False
    imagegen_log_prompts: bool = False
    #: Intake bearer tokens, comma-separated; each ``tenant:token`` or a bare token (tenant ``default``).
    imagegen_api_tokens: str = ""
    #: Bearer tokens (comma-separated, no tenant part) that see and act on every tenant's jobs.
    imagegen_admin_tokens: str = ""
    #: Largest HTTP request body the API reads (bytes); upstream webhooks get 64 KiB whatever this is.
    imagegen_api_max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    #: Port on which each worker host serves its Prometheus metrics (needs PROMETHEUS_MULTIPROC_DIR).
    imagegen_worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # --- the OpenAI-compatible front door (/v1/images/generations and /v1/images/edits) ------------
    #: The provider its jobs go to.
    imagegen_openai_compat_provider: str = "apidot"
    #: How long such a request waits for its images before it answers 504 (the jobs go on). Below the
    #: openai SDK's 600 s read timeout, so the SDK reads the 504 instead of timing out and retrying.
    imagegen_openai_compat_wait_s: float = Field(default=540.0, gt=0, le=86_400)

    @field_validator("imagegen_provider_limits")
    @classmethod
    def _check_limits(cls, value: str | None) -> str | None:
        if value is not None:
            parse_provider_limits(value)
        return value

    @model_validator(mode="after")
    def _check_tokens(self) -> Settings:
        # Parsed here so that a bad list stops every process at start, in one line naming the variable.
        tenants = parse_api_tokens(self.imagegen_api_tokens)
        admins = parse_admin_tokens(self.imagegen_admin_tokens)
        if admins & tenants.keys():
            raise ValueError("IMAGEGEN_ADMIN_TOKENS: a token is also in IMAGEGEN_API_TOKENS (give it one role)")
        return self

    @field_validator("imagegen_openai_compat_provider")
    @classmethod
    def _check_compat_provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"IMAGEGEN_OPENAI_COMPAT_PROVIDER must be one of {', '.join(PROVIDERS)}")
        return value

    @field_validator("imagegen_webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr) -> SecretStr:
        # A secret that cannot be decoded would fail every notification forever: refuse it at start.
        problem = webhook_secret_problem(value.get_secret_value())
        if problem:
            raise ValueError(f"IMAGEGEN_WEBHOOK_SECRET {problem}")
        return value

    @field_validator("imagegen_expected_duration_s")
    @classmethod
    def _check_expected(cls, value: str | None) -> str | None:
        if value is not None:
            parse_expected_durations(value)  # raises ValueError naming the problem
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                make_url(normalize_database_url(value))
            except ArgumentError:
                # The value is not shown: it may carry a password.
                raise ValueError("DATABASE_URL is not a database URL (e.g. sqlite:///path or postgresql://…)") from None
        return value

    @model_validator(mode="after")
    def _seconds_are_bounded(self) -> Settings:
        # Every duration becomes a timedelta or a timer somewhere; past a few years that overflows.
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("_s") and isinstance(value, int | float) and value > MAX_SETTING_S:
                raise ValueError(f"{name.upper()} must be at most {MAX_SETTING_S} seconds")
        return self

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> Settings:
        if self.imagegen_poll_min_s > self.imagegen_poll_cap_s:
            raise ValueError("IMAGEGEN_POLL_MIN_S must not exceed IMAGEGEN_POLL_CAP_S")
        if self.imagegen_backoff_base_s > self.imagegen_backoff_cap_s:
            raise ValueError("IMAGEGEN_BACKOFF_BASE_S must not exceed IMAGEGEN_BACKOFF_CAP_S")
        return self

    @model_validator(mode="after")
    def _countdowns_below_visibility(self) -> Settings:
        # Celery redelivers ETA messages older than the visibility timeout again and again
        # (celery#2599, kombu#337): every countdown we publish must stay far below it.
        if self.imagegen_eta_max_s * 10 > self.imagegen_visibility_timeout_s:
            raise ValueError(
                "IMAGEGEN_ETA_MAX_S must be at most a tenth of IMAGEGEN_VISIBILITY_TIMEOUT_S "
                f"({self.imagegen_eta_max_s} vs {self.imagegen_visibility_timeout_s})"
            )
        return self

    @model_validator(mode="after")
    def _limits_cover_what_they_guard(self) -> Settings:
        """Settings whose order matters (see ``config.limits``)."""
        problems = order_problems(self)
        if problems:
            raise ValueError(problems[0])
        return self

    # --- value groups (built on each read: cheap, and never stale after ``model_copy(update=...)``) ----
    @property
    def backoff(self) -> Backoff:
        """``IMAGEGEN_BACKOFF_BASE_S`` and ``_CAP_S``."""
        return Backoff(self.imagegen_backoff_base_s, self.imagegen_backoff_cap_s)

    @property
    def budgets(self) -> Budgets:
        """The ``IMAGEGEN_MAX_*`` failure budgets."""
        return Budgets(
            rate_limited_submits=self.imagegen_max_submits_rate_limited,
            unavailable_submits=self.imagegen_max_submits_unavailable,
            unknown_submits=self.imagegen_max_submits_unknown,
            poll_errors=self.imagegen_max_poll_errors,
            download_errors=self.imagegen_max_download_errors,
            download_attempts=self.imagegen_max_download_attempts,
            notify_attempts=self.imagegen_notify_max_attempts,
        )

    @property
    def timers(self) -> Timers:
        """Countdowns, grace, leases and the reconciler's pace."""
        return Timers(
            eta_max_s=self.imagegen_eta_max_s,
            dispatch_grace_s=self.imagegen_dispatch_grace_s,
            reconcile_interval_s=self.imagegen_reconcile_interval_s,
            release_batch=self.imagegen_release_batch,
            submit_lease_s=self.imagegen_submit_lease_s,
            pause_probe_s=self.imagegen_pause_probe_s,
            default_deadline_s=self.imagegen_default_deadline_s,
        )

    @property
    def polling(self) -> Polling:
        """The poll schedule's bounds and the webhook stretch."""
        return Polling(
            min_s=self.imagegen_poll_min_s,
            cap_s=self.imagegen_poll_cap_s,
            webhook_factor=self.imagegen_webhook_poll_factor,
            webhook_cap_s=self.imagegen_webhook_poll_cap_s,
            learn_durations=self.imagegen_learn_durations,
        )

    @property
    def http(self) -> Http:
        """HTTP timeouts and download limits."""
        return Http(
            connect_s=self.imagegen_http_connect_timeout_s,
            read_s=self.imagegen_http_read_timeout_s,
            submit_read_s=self.imagegen_submit_read_timeout_s,
            openai_read_s=self.imagegen_openai_read_timeout_s,
            download_max_s=self.imagegen_download_max_s,
            max_result_bytes=self.imagegen_max_result_bytes,
            allow_private_urls=self.imagegen_allow_private_urls,
        )

    # --- derived values ---------------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        """``DATABASE_URL``, or an SQLite file under ``IMAGEGEN_HOME``."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{self.imagegen_home / 'imagegen.db'}"

    @property
    def results_dir(self) -> Path:
        """Where result files are stored (``IMAGEGEN_RESULTS_DIR`` or ``IMAGEGEN_HOME/results``)."""
        return self.imagegen_results_dir or self.imagegen_home / "results"

    @property
    def expected_durations(self) -> dict[str, float]:
        """The expected-duration table (``provider/model/quality/resolution`` → seconds), parsed."""
        if self.imagegen_expected_duration_s is None:
            return dict(DEFAULT_EXPECTED_DURATIONS)
        return parse_expected_durations(self.imagegen_expected_duration_s)

    @property
    def callback_token_key(self) -> bytes:
        """The HMAC key of per-job callback tokens (see ``imagegen_callback_token_secret``)."""
        for secret in (
            self.imagegen_callback_token_secret,
            self.apidot_webhook_secret,
            self.imagegen_webhook_secret,
            self.apidot_api_key,
        ):
            if secret.get_secret_value():
                return b"imagegen-callback:" + secret.get_secret_value().encode()
        return b"imagegen-callback:unconfigured"

    @property
    def upload_token_key(self) -> bytes | None:
        """The HMAC key of upload URLs (``/uploads/…?token=``), or None: then no upload is served.

        Only a secret every process is given serves: not the APIDot key (an API process need not have
        it, and two deployments sharing one key would accept each other's URLs), never a constant.
        """
        for secret in (self.imagegen_callback_token_secret, self.apidot_webhook_secret, self.imagegen_webhook_secret):
            if secret.get_secret_value():
                return b"imagegen-upload:" + secret.get_secret_value().encode()
        return None

    @property
    def provider_limits(self) -> dict[str, dict[str, float]]:
        """``IMAGEGEN_PROVIDER_LIMITS``, parsed (provider → {rate_per_s, burst, max_in_flight})."""
        return parse_provider_limits(self.imagegen_provider_limits) if self.imagegen_provider_limits else {}

    @property
    def api_tokens(self) -> frozenset[str]:
        """The tenant tokens of ``IMAGEGEN_API_TOKENS`` (without their ``tenant:`` part)."""
        return frozenset(self.token_tenants)

    @property
    def token_tenants(self) -> dict[str, str]:
        """``IMAGEGEN_API_TOKENS`` as token → tenant (a bare token's tenant is ``default``)."""
        return parse_api_tokens(self.imagegen_api_tokens)

    @property
    def admin_tokens(self) -> frozenset[str]:
        """``IMAGEGEN_ADMIN_TOKENS``: tokens that see and act on every tenant."""
        return parse_admin_tokens(self.imagegen_admin_tokens)

    @property
    def auth_enabled(self) -> bool:
        """Whether the intake API asks for a token (any token of either list configured)."""
        return bool(self.token_tenants or self.admin_tokens)


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs, whatever spelling was given."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _token_problem(token: str) -> str | None:
    if not token:
        return "has an empty token"
    if any(c.isspace() for c in token):
        return "has a token with whitespace in it (a bearer token cannot carry it)"
    if not (token.isascii() and token.isprintable()):
        return "has a token with characters an Authorization header cannot carry (printable ASCII only)"
    return None


def parse_api_tokens(value: str) -> dict[str, str]:
    """Parse ``IMAGEGEN_API_TOKENS``: comma-separated ``tenant:token`` or bare ``token`` → {token: tenant}.

    The tenant is what comes before the first ``:`` (so a token may contain ``:`` when its tenant is
    written out). Errors name the variable and the entry's position, never a token.
    """
    out: dict[str, str] = {}
    for n, entry in enumerate((e.strip() for e in value.split(",")), start=1):
        if not entry:
            continue  # a trailing or doubled comma
        tenant, sep, token = entry.partition(":")
        if not sep:
            tenant, token = DEFAULT_TENANT, entry
        elif not tenant or not token:
            raise ValueError(f"IMAGEGEN_API_TOKENS entry {n}: tenant:token with an empty tenant or token")
        if not is_tenant(tenant):
            raise ValueError(f"IMAGEGEN_API_TOKENS entry {n}: the tenant {TENANT_RULE}")
        problem = _token_problem(token)
        if problem:
            raise ValueError(f"IMAGEGEN_API_TOKENS entry {n} {problem}")
        if out.get(token, tenant) != tenant:
            raise ValueError(f"IMAGEGEN_API_TOKENS entry {n}: the same token is given to two tenants")
        out[token] = tenant
    return out


def parse_admin_tokens(value: str) -> frozenset[str]:
    """Parse ``IMAGEGEN_ADMIN_TOKENS``: comma-separated tokens, taken whole (no tenant part)."""
    tokens: set[str] = set()
    for n, token in enumerate((e.strip() for e in value.split(",")), start=1):
        if not token:
            continue
        problem = _token_problem(token)
        if problem:
            raise ValueError(f"IMAGEGEN_ADMIN_TOKENS entry {n} {problem}")
        tokens.add(token)
    return frozenset(tokens)


def parse_expected_durations(value: str) -> dict[str, float]:
    """Parse ``IMAGEGEN_EXPECTED_DURATION_S``: a number (for every key) or a JSON object of key → seconds."""
    text = value.strip()
    try:
        parsed: Any = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"IMAGEGEN_EXPECTED_DURATION_S is neither a number nor JSON: {exc}") from None
    if isinstance(parsed, int | float) and not isinstance(parsed, bool):
        return {"*/*/*/*": _duration(parsed, "IMAGEGEN_EXPECTED_DURATION_S")}
    if not isinstance(parsed, dict):
        raise ValueError("IMAGEGEN_EXPECTED_DURATION_S must be a number or a JSON object")
    table: dict[str, float] = {}
    for key, seconds in parsed.items():
        if len(str(key).split("/")) != 4:
            raise ValueError(f"IMAGEGEN_EXPECTED_DURATION_S key {key!r} is not provider/model/quality/resolution")
        provider = str(key).split("/")[0]
        if provider != "*" and provider not in PROVIDERS:
            raise ValueError(
                f"IMAGEGEN_EXPECTED_DURATION_S key {key!r}: unknown provider {provider!r} "
                f"(one of {', '.join(PROVIDERS)} or *)"
            )
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise ValueError(f"IMAGEGEN_EXPECTED_DURATION_S[{key!r}] must be a number")
        table[str(key)] = _duration(seconds, f"IMAGEGEN_EXPECTED_DURATION_S[{key!r}]")
    return table


_LIMIT_FIELDS = {
    "rate_per_s",
    "burst",
    "max_in_flight",
    "min_rate_fraction",
    "decrease_factor",
    "recover_step",
    "batch_horizon_s",
}


def parse_provider_limits(value: str) -> dict[str, dict[str, float]]:
    """Parse ``IMAGEGEN_PROVIDER_LIMITS`` (a JSON object of provider → limits); errors name the bad key."""
    try:
        parsed: Any = json.loads(value)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"IMAGEGEN_PROVIDER_LIMITS is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError("IMAGEGEN_PROVIDER_LIMITS must be a JSON object of provider -> limits")
    out: dict[str, dict[str, float]] = {}
    for provider, limits in parsed.items():
        if provider not in PROVIDERS:
            # A typo would mean no limit at all for the real key.
            raise ValueError(
                f"IMAGEGEN_PROVIDER_LIMITS key {provider!r}: unknown provider (one of {', '.join(PROVIDERS)})"
            )
        if not isinstance(limits, dict) or not set(limits) <= _LIMIT_FIELDS:
            raise ValueError(
                f"IMAGEGEN_PROVIDER_LIMITS[{provider!r}] must be an object with keys {sorted(_LIMIT_FIELDS)}"
            )
        for key, number in limits.items():
            if (
                isinstance(number, bool)
                or not isinstance(number, int | float)
                or not math.isfinite(number)
                or number <= 0
            ):
                raise ValueError(f"IMAGEGEN_PROVIDER_LIMITS[{provider!r}][{key!r}] must be a positive number")
        out[str(provider)] = {k: float(v) for k, v in limits.items()}
    return out


def _duration(value: float, name: str) -> float:
    """A finite number of seconds between 0 and a day (an expected render time, not a deadline)."""
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_EXPECTED_DURATION_S:
        raise ValueError(f"{name} must be between 0 and {MAX_EXPECTED_DURATION_S:.0f} seconds")
    return seconds


def webhook_secret_problem(secret: str) -> str | None:
    """Why ``secret`` is not a Standard Webhooks secret (``whsec_`` + base64 of the key), or None."""
    if not secret:
        return None  # unset: notifications go out unsigned
    if not secret.startswith("whsec_"):
        return "must start with whsec_ (whsec_ + the base64 of the key)"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "is not whsec_ + base64 (the part after whsec_ does not decode)"
    return None if key else "has an empty key after whsec_"


class ConfigError(ValueError):
    """The environment holds an invalid setting; ``str()`` is one line naming the variable(s)."""


def describe_errors(exc: ValidationError) -> str:
    """One line for a settings ``ValidationError``: each problem names its variable, values never shown
    (they may be secrets)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        loc = error.get("loc") or ()
        name = str(loc[0]).upper() if loc else ""
        parts.append(message if not name or message.startswith(name) else f"{name}: {message}")
    text = "; ".join(parts) or "invalid settings"
    return "configuration error: " + " ".join(text.split())


def load_settings() -> Settings:
    """``Settings()`` from the environment, or ``ConfigError`` with one line naming the bad variables."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (``ConfigError`` if the environment holds a bad value)."""
    return load_settings()
