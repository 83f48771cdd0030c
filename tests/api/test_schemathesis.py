"""Property-based tests of the whole API from its own OpenAPI schema: no 5xx, and answers match the schema."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import CheckFunction
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from config.settings import Settings
from imagegen.api import create_app
from imagegen.runtime import Runtime
from imagegen.webhooks.inbound import WebhookAccepted
from tests.support.api import GOOD_TOKEN, UNREACHABLE_REDIS, FakeWebhookCore
from tests.support.recorder import RecordingPublisher

# Built at import: schemathesis needs the schema when it collects the tests (its lazy ``from_fixture``
# loader does not work with pytest 9). The database lives in a temporary directory removed at the end.
_TMP = tempfile.TemporaryDirectory(prefix="imagegen-schemathesis-")
# No worker runs: the OpenAI-compatible routes' wait runs out at once (a documented 504).
_RUNTIME = Runtime.create(
    Settings(database_url=f"sqlite:///{_TMP.name}/t.db", redis_url=UNREACHABLE_REDIS, imagegen_openai_compat_wait_s=0.2)
)


class AnyTokenCore(FakeWebhookCore):
    """The fake core, accepting any token for apidot, so fuzzed deliveries also reach the 202 path."""

    def __call__(
        self, rt: Runtime, provider: str, *, token: str | None, headers: Mapping[str, str], body: bytes
    ) -> WebhookAccepted:
        return super().__call__(rt, provider, token=GOOD_TOKEN if token else None, headers=headers, body=body)


_APP = create_app(runtime=_RUNTIME, publisher=RecordingPublisher(), webhook_receiver=AnyTokenCore())
# A body over IMAGEGEN_API_MAX_BODY_BYTES (the coverage phase's 10,001-item batch) is rightly refused 413.
_REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
_CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": _REJECTIONS}}})
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP, config=_CONFIG)

# The same API with IMAGEGEN_API_TOKENS set: schemathesis also checks that the declared auth is enforced.
_GUARDED = create_app(
    runtime=_RUNTIME,
    publisher=RecordingPublisher(),
    settings=_RUNTIME.settings.model_copy(update={"imagegen_api_tokens": "t1,t2"}),
    webhook_receiver=AnyTokenCore(),
)
# Examples and fuzzing only: the coverage phase's boundary cases (10,000-item batches) already ran above.
# Fuzzing can still draw a batch over the body cap: the same 413 counts as a rejection here.
_NO_COVERAGE = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}},
        "checks": {"negative_data_rejection": {"expected-statuses": _REJECTIONS}},
    }
)
guarded_schema = schemathesis.openapi.from_asgi("/openapi.json", _GUARDED, config=_NO_COVERAGE).include(
    path_regex="^/v1/"
)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _RUNTIME.close()
    _TMP.cleanup()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    # positive_data_acceptance is off: the schema cannot express every cross-field rule of a request
    # (e.g. a custom WxH size needs resolution 2K), so schema-valid requests may rightly get a 422.
    excluded: list[CheckFunction] = [positive_data_acceptance]
    if case.path == "/healthz" or case.path.startswith("/v1/images/"):
        # Without a broker the documented answer is 503 (tests/api/test_ops.py covers the 200); without a
        # worker an OpenAI-compatible call's documented answer is 504 (its wait ran out).
        excluded.append(not_a_server_error)
    case.call_and_validate(excluded_checks=excluded)


@guarded_schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_guarded_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    excluded: list[CheckFunction] = [positive_data_acceptance]
    if case.path.startswith("/v1/images/"):
        excluded.append(not_a_server_error)  # the documented 504: no worker runs here
    case.call_and_validate(headers={"Authorization": "Bearer t2"}, excluded_checks=excluded)
