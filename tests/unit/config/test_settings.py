"""Typed settings (README, 'Configuration'): defaults, validation, expected durations, database URLs, secrets."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from config.limits import TIME_LIMITS, async_submit_limits
from config.settings import (
    DEFAULT_EXPECTED_DURATIONS,
    ConfigError,
    Settings,
    describe_errors,
    load_settings,
    normalize_database_url,
    parse_expected_durations,
    webhook_secret_problem,
)

_PREFIXES = ("IMAGEGEN_", "APIDOT_", "OPENAI_", "IMAGE2_", "REDIS_URL", "DATABASE_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: keep the developer's own variables out of these tests."""
    for name in list(os.environ):
        if name.upper().startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = Settings()
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.database_url is None
    assert s.apidot_base_url == "https://api.apidot.ai"
    assert s.openai_base_url == "https://api.openai.com/v1"
    assert s.image2_base_url == "https://image2.vip/api/v1"
    assert s.imagegen_max_submits_rate_limited == 10
    assert s.imagegen_max_submits_unavailable == 6
    assert s.imagegen_max_poll_errors == 10
    assert (s.imagegen_backoff_base_s, s.imagegen_backoff_cap_s) == (1.0, 60.0)
    assert s.imagegen_default_deadline_s == 3600.0
    assert s.imagegen_eta_max_s == 60.0
    assert s.imagegen_submit_policy == "at_least_once"
    assert s.imagegen_allow_private_urls is False
    assert s.imagegen_home == Path.home() / ".local" / "share" / "imagegen"
    assert s.expected_durations == DEFAULT_EXPECTED_DURATIONS
    assert s.api_tokens == frozenset()


def test_environment_is_read_case_insensitively(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_MAX_POLL_ERRORS", "3")
    monkeypatch.setenv("APIDOT_API_KEY", "sk-from-env")
    monkeypatch.setenv("imagegen_backoff_cap_s", "30")
    monkeypatch.setenv("IMAGEGEN_EXPECTED_DURATION_S", "")  # empty counts as unset
    s = Settings()
    assert s.imagegen_max_poll_errors == 3
    assert s.apidot_api_key.get_secret_value() == "sk-from-env"
    assert s.imagegen_backoff_cap_s == 30.0
    assert s.imagegen_expected_duration_s is None


def test_keyword_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_MAX_POLL_ERRORS", "3")
    assert Settings(imagegen_max_poll_errors=7).imagegen_max_poll_errors == 7


# --- countdowns vs. visibility timeout -------------------------------------------------------------


def test_eta_max_above_a_tenth_of_the_visibility_timeout_is_rejected() -> None:
    with pytest.raises(ValidationError, match="IMAGEGEN_ETA_MAX_S must be at most a tenth"):
        Settings(imagegen_eta_max_s=600, imagegen_visibility_timeout_s=3600)
    with pytest.raises(ValidationError):
        Settings(imagegen_eta_max_s=360.5, imagegen_visibility_timeout_s=3600)
    with pytest.raises(ValidationError):
        Settings(imagegen_eta_max_s=60, imagegen_visibility_timeout_s=599)


def test_eta_max_at_exactly_a_tenth_is_accepted() -> None:
    s = Settings(imagegen_eta_max_s=360, imagegen_visibility_timeout_s=3600)
    assert (s.imagegen_eta_max_s, s.imagegen_visibility_timeout_s) == (360.0, 3600)
    assert Settings(imagegen_eta_max_s=6, imagegen_visibility_timeout_s=60).imagegen_eta_max_s == 6.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"imagegen_max_submits_rate_limited": 0},
        {"imagegen_max_submits_unavailable": 0},
        {"imagegen_max_poll_errors": 0},
        {"imagegen_backoff_base_s": 0},
        {"imagegen_backoff_cap_s": -1},
        {"imagegen_default_deadline_s": 0},
        {"imagegen_poll_min_s": -0.1},
        {"imagegen_eta_max_s": 0},
        {"imagegen_visibility_timeout_s": 59},
        {"imagegen_submit_policy": "exactly_once"},
        {"imagegen_max_poll_errors": "many"},
    ],
)
def test_out_of_range_values_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**kwargs)
    assert next(iter(kwargs)) in str(info.value)


def test_at_most_once_policy_is_accepted() -> None:
    assert Settings(imagegen_submit_policy="at_most_once").imagegen_submit_policy == "at_most_once"


# --- expected durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("90", {"*/*/*/*": 90.0}),
        (" 12.5 ", {"*/*/*/*": 12.5}),
        ("0", {"*/*/*/*": 0.0}),
        ('{"apidot/*/low/*": 70}', {"apidot/*/low/*": 70.0}),
        ('{"apidot/*/low/*": 70, "*/*/high/4K": 300.5}', {"apidot/*/low/*": 70.0, "*/*/high/4K": 300.5}),
        ("{}", {}),
    ],
)
def test_parse_expected_durations(text: str, table: dict[str, float]) -> None:
    parsed = parse_expected_durations(text)
    assert parsed == table
    assert all(type(v) is float for v in parsed.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fast", "neither a number nor JSON"),
        ("", "neither a number nor JSON"),
        ("-1", "must be between"),
        ("[70]", "must be a number or a JSON object"),
        ('"70"', "must be a number or a JSON object"),
        ("true", "must be a number or a JSON object"),
        ("null", "must be a number or a JSON object"),
        ('{"apidot/low": 70}', "is not provider/model/quality/resolution"),
        ('{"a/b/c/d/e": 70}', "is not provider/model/quality/resolution"),
        ('{"apidot/b/c/d": "70"}', "must be"),
        ('{"apidot/b/c/d": -5}', "must be"),
        ('{"apidot/b/c/d": true}', "must be"),
        ('{"apidot/b/c/d": null}', "must be"),
    ],
)
def test_parse_expected_durations_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_expected_durations(text)


@pytest.mark.parametrize("text", ["Infinity", "NaN", "1e999", '{"apidot/b/c/d": Infinity}', '{"apidot/b/c/d": NaN}'])
def test_parse_expected_durations_rejects_non_finite(text: str) -> None:
    with pytest.raises(ValueError):
        parse_expected_durations(text)


def test_huge_expected_duration_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        Settings(imagegen_expected_duration_s="1" + "0" * 400)


def test_settings_validate_expected_durations() -> None:
    s = Settings(imagegen_expected_duration_s='{"apidot/*/low/*": 70}')
    assert s.expected_durations == {"apidot/*/low/*": 70.0}
    assert Settings(imagegen_expected_duration_s="0").expected_durations == {"*/*/*/*": 0.0}
    with pytest.raises(ValidationError, match="is not provider/model/quality/resolution"):
        Settings(imagegen_expected_duration_s='{"low": 70}')
    with pytest.raises(ValidationError, match="neither a number nor JSON"):
        Settings(imagegen_expected_duration_s="soon")


def test_default_expected_durations_are_the_spec_tiers() -> None:
    assert DEFAULT_EXPECTED_DURATIONS == {
        "*/*/low/*": 70.0,
        "*/*/medium/*": 120.0,
        "*/*/high/*": 276.0,
        "*/*/*/*": 120.0,
    }
    # The property hands out a copy: callers cannot change the defaults.
    Settings().expected_durations["*/*/low/*"] = 1.0
    assert DEFAULT_EXPECTED_DURATIONS["*/*/low/*"] == 70.0


# --- database URLs and paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("postgres://u:p@db:5432/imagegen", "postgresql+psycopg://u:p@db:5432/imagegen"),
        ("postgresql://u:p@db/imagegen", "postgresql+psycopg://u:p@db/imagegen"),
        ("postgresql+psycopg2://u@db/x", "postgresql+psycopg://u@db/x"),
        ("postgresql+psycopg://u@db/x", "postgresql+psycopg://u@db/x"),
        ("sqlite:///./imagegen.db", "sqlite:///./imagegen.db"),
        ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
        ("mysql://u@db/x", "mysql://u@db/x"),
    ],
)
def test_normalize_database_url(url: str, normalized: str) -> None:
    assert normalize_database_url(url) == normalized
    assert normalize_database_url(normalized) == normalized  # idempotent


def test_effective_database_url(tmp_path: Path) -> None:
    assert Settings(imagegen_home=tmp_path).effective_database_url == f"sqlite:///{tmp_path / 'imagegen.db'}"
    s = Settings(database_url="postgres://u:p@db/x", imagegen_home=tmp_path)
    assert s.effective_database_url == "postgresql+psycopg://u:p@db/x"


def test_results_dir(tmp_path: Path) -> None:
    assert Settings(imagegen_home=tmp_path).results_dir == tmp_path / "results"
    assert Settings(imagegen_home=tmp_path, imagegen_results_dir=tmp_path / "r").results_dir == tmp_path / "r"


def test_api_tokens() -> None:
    assert Settings(imagegen_api_tokens=" a, b ,,c ,").api_tokens == frozenset({"a", "b", "c"})
    assert Settings(imagegen_api_tokens=" , ").api_tokens == frozenset()


# --- secrets --------------------------------------------------------------------------------------

SECRET_FIELDS = [
    "apidot_api_key",
    "openai_api_key",
    "image2_api_key",
    "apidot_webhook_secret",
    "imagegen_webhook_secret",
]


@pytest.mark.parametrize("name", SECRET_FIELDS)
def test_secrets_are_secretstr_and_hidden(name: str) -> None:
    marker = f"sk-marker-{name}"
    if name == "imagegen_webhook_secret":  # must be a Standard Webhooks secret
        marker = "whsec_" + base64.b64encode(marker.encode()).decode()
    s = Settings(**{name: marker})
    value = getattr(s, name)
    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == marker
    assert marker not in repr(s)
    assert marker not in str(s)
    assert marker not in repr(value)
    assert marker not in str(s.model_dump())


def test_repr_hides_the_api_key() -> None:
    s = Settings(apidot_api_key="sk-marker")
    assert "sk-marker" not in repr(s)
    assert "apidot_api_key=SecretStr('**********')" in repr(s)


# --- provider-keyed settings, webhook secret, ordered pairs (one line each) ----------------------------


def _one_line(**kwargs: object) -> str:
    with pytest.raises(ValidationError) as info:
        Settings(**kwargs)
    line = describe_errors(info.value)
    assert "\n" not in line
    return line


def test_a_typo_in_a_provider_limits_key_is_an_error() -> None:
    line = _one_line(imagegen_provider_limits='{"apidott": {"rate_per_s": 5}}')
    assert "IMAGEGEN_PROVIDER_LIMITS" in line and "unknown provider 'apidott'" not in line
    assert "'apidott': unknown provider" in line
    assert Settings(imagegen_provider_limits='{"image2": {"rate_per_s": 5}}').provider_limits == {
        "image2": {"rate_per_s": 5.0}
    }


def test_a_typo_in_an_expected_duration_provider_is_an_error() -> None:
    line = _one_line(imagegen_expected_duration_s='{"opneai/*/low/*": 70}')
    assert "IMAGEGEN_EXPECTED_DURATION_S" in line and "unknown provider 'opneai'" in line
    assert parse_expected_durations('{"*/*/low/*": 1, "openai/*/*/*": 2}') == {"*/*/low/*": 1.0, "openai/*/*/*": 2.0}


@pytest.mark.parametrize(
    ("secret", "why"),
    [("plainsecret", "must start with whsec_"), ("whsec_not base64!", "does not decode"), ("whsec_", "empty key")],
)
def test_a_webhook_secret_that_is_not_whsec_base64_is_an_error(secret: str, why: str) -> None:
    line = _one_line(imagegen_webhook_secret=secret)
    assert line.startswith("configuration error: IMAGEGEN_WEBHOOK_SECRET") and why in line
    assert secret.removeprefix("whsec_") not in line or not secret.removeprefix("whsec_")


def test_a_standard_webhooks_secret_is_accepted() -> None:
    good = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert Settings(imagegen_webhook_secret=good).imagegen_webhook_secret.get_secret_value() == good
    assert webhook_secret_problem("") is None


def test_a_submit_lease_below_the_submit_hard_limit_is_an_error() -> None:
    hard = TIME_LIMITS["imagegen.submit"][1]
    line = _one_line(imagegen_submit_lease_s=hard)
    assert "IMAGEGEN_SUBMIT_LEASE_S" in line and "imagegen.submit hard time limit" in line
    assert Settings(imagegen_submit_lease_s=hard + 1).imagegen_submit_lease_s == hard + 1


def test_timeouts_past_the_poll_soft_limit_are_an_error() -> None:
    soft = TIME_LIMITS["imagegen.poll"][0]
    line = _one_line(imagegen_http_read_timeout_s=soft - 1, imagegen_http_connect_timeout_s=1)
    assert "IMAGEGEN_HTTP_CONNECT_TIMEOUT_S + IMAGEGEN_HTTP_READ_TIMEOUT_S" in line
    assert Settings(imagegen_http_read_timeout_s=soft - 2, imagegen_http_connect_timeout_s=1)


def test_the_submit_time_limit_follows_the_submit_timeouts() -> None:
    """A longer submit read timeout stretches the submit task's limits; the lease must then follow."""
    assert async_submit_limits(Settings()) == TIME_LIMITS["imagegen.submit"]
    line = _one_line(imagegen_submit_read_timeout_s=200)
    assert "IMAGEGEN_SUBMIT_LEASE_S" in line and "imagegen.submit hard time limit" in line
    soft, hard = async_submit_limits(Settings(imagegen_submit_read_timeout_s=200, imagegen_submit_lease_s=300))
    assert soft > 205 and hard > soft


def test_get_settings_turns_a_validation_error_into_one_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_POLL_MIN_S", "abc")
    monkeypatch.setenv("IMAGEGEN_WEBHOOK_SECRET", "hunter2-secret")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "IMAGEGEN_POLL_MIN_S" in text and "IMAGEGEN_WEBHOOK_SECRET" in text and "\n" not in text
    assert "hunter2" not in text and "abc" not in text


_SECONDS = [n for n in Settings.model_fields if n.endswith("_s") and n != "imagegen_expected_duration_s"]


@pytest.mark.parametrize("name", _SECONDS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300"])
def test_no_duration_setting_accepts_a_value_that_overflows_a_timer(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{name: value})
    assert name.upper() in describe_errors(caught.value)
