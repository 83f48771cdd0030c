"""docker-compose.yml, checked without a Docker engine.

- Valid against the Compose Specification JSON schema. ``compose-spec.json`` beside this file is the
  official schema of compose-spec/compose-spec (Apache-2.0), as vendored in the npm package
  ``dclint`` 3.1.0 (``schemas/compose.schema.json``; dclint is MIT), sha256
  46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496.
- Every command and health check runs something that exists: ``imagegen`` subcommands and flags (click,
  strict parsing of the leaf command), ``celery -A worker`` subcommands and their options (Celery's
  own click commands), our queues, Flower's options, the Flower config file the Dockerfile writes.
- Wiring: ``depends_on`` targets and conditions, one environment for every app service, volumes.
- Secrets: none written in the file; the ones that must be set are required interpolations.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from celery.bin.base import CLIContext
from celery.bin.celery import celery
from tornado.options import options as tornado_options

from imagegen.cli.main import main as imagegen
from imagegen.constants import QUEUES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).with_name("compose-spec.json")
APP_IMAGE = "${IMAGEGEN_IMAGE:-imagegen-queue:latest}"
WORKERS = {
    "worker-interactive": ["interactive", "celery"],
    "worker-batch": ["batch"],
    "worker-poll": ["poll"],
    "worker-openai": ["openai"],
    "worker-openai-batch": ["openai-batch"],
    "worker-reconcile": ["reconcile"],
    "worker-notify": ["notify"],
}
REQUIRED_SECRETS = {"POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH", "IMAGEGEN_API_TOKENS"}
#: What `docker compose` would see with a filled-in .env (values for the required variables only).
FILLED_ENV = {name: f"test-{name.lower()}" for name in REQUIRED_SECRETS}
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|BASIC_AUTH", re.IGNORECASE)

# --- loading and interpolation ------------------------------------------------------------------

_VAR = re.compile(
    r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (``$$``, ``${VAR}``, ``:-``, ``-``, ``:?``, ``?``, ``:+``, ``+``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        current = env.get(name)
        empty = not current
        if op in (":-", "-"):
            return str(interpolate(arg, env)) if (empty if op == ":-" else current is None) else str(current)
        if op in (":?", "?"):
            if empty if op == ":?" else current is None:
                raise MissingVariable(f"{name}: {arg}")
            return str(current)
        if op in (":+", "+"):
            return arg if not (empty if op == ":+" else current is None) else ""
        return current or ""

    return _VAR.sub(one, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """docker-compose.yml as YAML (anchors and merge keys resolved), before interpolation."""
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The file as `docker compose` sees it with the required variables set."""
    result = interpolate(raw, FILLED_ENV)
    assert isinstance(result, dict)
    return result


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if svc.get("image") == "imagegen-queue:latest"}


# --- schema -------------------------------------------------------------------------------------


def test_valid_against_the_compose_specification(raw: dict[str, Any], compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    for document in (raw, compose):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The validator is not vacuous: it rejects what `docker compose config` rejects.
    for broken in (
        {"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "service_ready"}}}}},
        {"services": {"a": {"image": "x", "healthcheck": {"tests": ["CMD", "true"]}}}},
        {"services": {"a": {"image": "x"}}, "volume": {}},
    ):
        assert list(validator.iter_errors(broken)), broken


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "redis",
        "postgres",
        "migrate",
        *WORKERS,
        "beat",
        "flower",
        "api",
        "simulator",
    }
    assert set(app_services(services)) == set(services) - {"redis", "postgres"}
    assert services["simulator"]["profiles"] == ["demo"]
    assert [n for n, s in services.items() if s.get("profiles")] == ["simulator"]
    # The schema takes any string here; Docker does not.
    for name, svc in services.items():
        assert re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", svc["restart"]), name


# --- commands -----------------------------------------------------------------------------------


def _argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def resolve_imagegen(argv: list[str]) -> click.Context:
    """Parse ``imagegen …`` as the CLI would: groups leniently, the leaf command strictly."""
    assert argv[0] == "imagegen", argv
    ctx = imagegen.make_context("imagegen", argv[1:], resilient_parsing=True)
    group: click.Group = imagegen
    args = [*getattr(ctx, "_protected_args", []), *ctx.args]
    while True:
        name, command, rest = group.resolve_command(ctx, args)
        assert name is not None and command is not None, f"imagegen has no command {args[0]!r}"
        if isinstance(command, click.Group):
            ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=True)
            group, args = command, [*getattr(ctx, "_protected_args", []), *ctx.args]
            continue
        leaf = command.make_context(name, rest, parent=ctx)  # strict: unknown flags and bad values fail
        assert not leaf.args, f"stray arguments {leaf.args} in {argv}"
        return leaf


def resolve_celery(argv: list[str]) -> tuple[str, click.Context]:
    """Parse ``celery -A worker SUB …`` with Celery's own click commands (strictly for the subcommand)."""
    from worker.app import app

    assert argv[:3] == ["celery", "-A", "worker"], argv
    ctx = celery.make_context("celery", argv[1:], resilient_parsing=True)
    ctx.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    name, command, rest = celery.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
    assert name in ("worker", "beat", "flower") and command is not None, f"unexpected celery subcommand {name}"
    return name, command.make_context(name, rest, parent=ctx)


def _option(argv: list[str], *flags: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg in flags:
            return argv[index + 1]
        for flag in flags:
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None


def test_every_command_exists(services: dict[str, dict[str, Any]]) -> None:
    commands = {name: _argv(svc["command"]) for name, svc in services.items() if "command" in svc}
    assert set(commands) == set(services) - {"postgres"}  # postgres runs its image's own command
    assert commands["redis"][0] == "redis-server"
    for name, argv in commands.items():
        if name == "redis":
            continue
        if argv[0] == "imagegen":
            resolve_imagegen(argv)
        else:
            resolve_celery(argv)
    assert commands["migrate"] == ["imagegen", "db", "upgrade"]
    assert resolve_imagegen(commands["api"]).params == {"host": "0.0.0.0", "port": 8000}
    assert resolve_imagegen(commands["simulator"]).params == {"host": "0.0.0.0", "port": 8800}


def test_workers_cover_every_queue_and_checks_match_them(services: dict[str, dict[str, Any]]) -> None:
    consumed: list[str] = []
    for name, queues in WORKERS.items():
        argv = _argv(services[name]["command"])
        sub, ctx = resolve_celery(argv)
        assert sub == "worker"
        assert list(ctx.params["queues"]) == queues, name
        assert set(queues) <= set(QUEUES), f"{name} consumes a queue config.celery does not declare"
        assert isinstance(ctx.params["concurrency"], int) and ctx.params["concurrency"] >= 1
        node = _option(argv, "-n", "--hostname")
        assert node is not None and node.endswith("@%h"), f"{name}: give the worker a node name like role@%h"
        # The health check asks about this node and these queues (a busy queue of another worker
        # must not make this one look stalled).
        check = services[name]["healthcheck"]["test"]
        assert check[0] == "CMD-SHELL"
        leaf = resolve_imagegen(shlex.split(check[1]))
        assert leaf.info_name == "liveness"
        assert leaf.params["hostname"] == node.replace("%h", "$HOSTNAME")
        assert leaf.params["queues"].split(",") == queues
        consumed += queues
    assert sorted(consumed) == sorted(QUEUES), "every queue needs a worker"
    assert len(consumed) == len(set(consumed)), "a queue is consumed by two worker services"
    concurrency = {n: resolve_celery(_argv(services[n]["command"]))[1].params["concurrency"] for n in WORKERS}
    assert concurrency["worker-poll"] > concurrency["worker-interactive"] > concurrency["worker-openai"]
    openai_check = resolve_imagegen(shlex.split(services["worker-openai"]["healthcheck"]["test"][1]))
    assert openai_check.params["max_idle"] > 600, "an OpenAI call may run 600 s without finishing a task"


def test_beat_and_its_schedule_volume(services: dict[str, dict[str, Any]]) -> None:
    sub, ctx = resolve_celery(_argv(services["beat"]["command"]))
    assert sub == "beat"
    schedule = Path(ctx.params["schedule"])
    mounts = {v.split(":")[1] for v in services["beat"]["volumes"]}
    assert str(schedule.parent) in mounts, "the beat schedule must live on a volume"
    code = services["beat"]["healthcheck"]["test"][-1]
    compile(code, "beat-healthcheck", "exec")
    assert str(schedule) in code


def test_flower_options_auth_and_persistence(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    argv = _argv(flower["command"])
    sub, ctx = resolve_celery(argv)
    assert sub == "flower"
    given: dict[str, str] = {}
    for arg in ctx.params["tornado_argv"]:
        name, _, value = arg.lstrip("-").partition("=")
        option = tornado_options._options.get(name.replace("_", "-"))
        assert option is not None, f"Flower has no option {name!r}"
        assert option.type is not type(lambda: None), f"--{name} cannot be given on the command line"
        saved = option._value
        try:
            option.parse(value)  # raises on a value of the wrong type
        finally:
            option._value = saved
        given[name.replace("-", "_")] = value
    assert given["persistent"] == "True" and given["db"].startswith("/data/flower/")
    assert int(given["state_save_interval"]) > 0 and int(given["purge_offline_workers"]) > 0
    assert "/data/flower" in {v.split(":")[1] for v in flower["volumes"]}
    # Basic auth is read from the environment by Flower (never on the command line) and required.
    assert "basic_auth" not in given and flower["environment"]["FLOWER_BASIC_AUTH"] == FILLED_ENV["FLOWER_BASIC_AUTH"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"], "/metrics and /healthcheck have no auth: loopback only"
    # --conf names the file the Dockerfile writes, and that file sets format_task to our redaction.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert given["conf"] == "/app/flowerconfig.py" and "COPY flowerconfig.py /app/flowerconfig.py" in dockerfile
    assert "from imagegen.redaction import format_task" in (ROOT / "flowerconfig.py").read_text(encoding="utf-8")
    from imagegen.redaction import format_task

    assert callable(format_task)


def test_health_checks_everywhere(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if name == "migrate":
            assert svc["restart"] == "no" and "healthcheck" not in svc  # one-shot: it exits
            continue
        test = svc["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        argv = shlex.split(test[1]) if test[0] == "CMD-SHELL" else list(test[1:])
        if argv[0] == "imagegen":
            resolve_imagegen(argv)
        elif argv[:2] == ["python", "-c"]:
            compile(argv[2], f"{name}-healthcheck", "exec")
        else:
            assert argv[0] in ("redis-cli", "pg_isready"), f"{name}: unexpected health check {argv}"
    urls = {
        "api": "http://127.0.0.1:8000/healthz",
        "flower": "http://127.0.0.1:5555/healthcheck",
        "simulator": "http://127.0.0.1:8800/_sim/health",
    }
    for name, url in urls.items():
        assert url in services[name]["healthcheck"]["test"][-1], name


# --- wiring -------------------------------------------------------------------------------------


def test_depends_on(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for target, spec in (svc.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert not services[target].get("profiles"), f"{name} depends on {target}, which is not always started"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: it has no check"
            else:
                assert (condition, target) == ("service_completed_successfully", "migrate"), (name, target)
    needs_schema = set(app_services(services)) - {"migrate", "flower", "simulator"}
    for name in needs_schema:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == deps["postgres"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["flower"]["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_every_app_service_gets_the_same_environment(raw: dict[str, Any], compose: dict[str, Any]) -> None:
    anchor = interpolate(raw["x-app-env"], FILLED_ENV)
    for name, svc in app_services(compose["services"]).items():
        env = svc["environment"]
        assert {k: env.get(k) for k in anchor} == anchor, f"{name} does not use the x-app-env environment"
        extra = {
            "FLOWER_BASIC_AUTH",
            "IMAGEGEN_API_TOKENS",
            "IMAGEGEN_ADMIN_TOKENS",
            "PROMETHEUS_MULTIPROC_DIR",
            "IMAGEGEN_WORKER_METRICS_PORT",
        }
        assert set(env) - set(anchor) <= extra, name
    assert compose["services"]["api"]["environment"]["IMAGEGEN_API_TOKENS"] == FILLED_ENV["IMAGEGEN_API_TOKENS"]
    # Every variable the project reads from a provider account reaches the workers.
    for key in ("APIDOT_API_KEY", "APIDOT_BASE_URL", "OPENAI_API_KEY", "IMAGE2_API_KEY", "REDIS_URL", "DATABASE_URL"):
        assert key in anchor
    assert anchor["DATABASE_URL"].startswith("postgresql://imagegen:test-postgres_password@postgres:5432/")
    assert anchor["REDIS_URL"] == "redis://redis:6379/0"
    # A workers-only host (scaling out) points every service at the first host's Redis and PostgreSQL.
    remote = {**FILLED_ENV, "EXTERNAL_REDIS_URL": "redis://10.0.0.1:6379/0", "EXTERNAL_DATABASE_URL": "postgresql://x"}
    for name, svc in app_services(interpolate(raw, remote)["services"]).items():
        assert (svc["environment"]["REDIS_URL"], svc["environment"]["DATABASE_URL"]) == (
            "redis://10.0.0.1:6379/0",
            "postgresql://x",
        ), name


def test_results_are_shared_and_writable(raw: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    results_dir = raw["x-app-env"]["IMAGEGEN_RESULTS_DIR"]
    for name in [*WORKERS, "api"]:
        assert f"results:{results_dir}" in services[name]["volumes"], name
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for mount in {results_dir, "/data/beat", "/data/flower"}:
        assert mount in dockerfile, f"the image must create {mount} (owned by the app user) for its volume"
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE), "the image must not run as root"


def test_workers_serve_metrics_from_a_fresh_multiprocess_dir(services: dict[str, dict[str, Any]]) -> None:
    from config.settings import Settings

    for name in WORKERS:
        env = services[name]["environment"]
        directory = env["PROMETHEUS_MULTIPROC_DIR"]
        assert any(t.split(":")[0] == directory for t in services[name]["tmpfs"]), name
        assert Settings(imagegen_worker_metrics_port=env["IMAGEGEN_WORKER_METRICS_PORT"]).imagegen_worker_metrics_port
        soft = Settings().imagegen_soft_shutdown_s
        grace = services[name]["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > soft + 5, "SIGKILL must not cut the soft shutdown"
    for name in set(services) - set(WORKERS):
        assert "PROMETHEUS_MULTIPROC_DIR" not in (services[name].get("environment") or {}), name


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    argv = _argv(services["redis"]["command"])
    assert _option(argv, "--appendonly") == "yes"
    assert _option(argv, "--appendfsync") == "everysec"
    assert _option(argv, "--maxmemory-policy") == "noeviction"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


# --- secrets ------------------------------------------------------------------------------------


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def test_no_literal_secrets(raw: dict[str, Any]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert not re.search(r"sk-[A-Za-z0-9_-]{4,}", text)
    for path, value in _strings(raw):
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEY.search(key):
            # A secret is empty by default or required; never a literal or a literal default.
            assert re.fullmatch(r"\$\{[A-Z0-9_]+(:-|:\?[^}]*)?\}", value), f"{path} = {value!r}"
            assert ":-" not in value or value.endswith(":-}"), f"{path} has a default value"
        userinfo = re.search(r"://[^:/@]+:([^@]+)@", value)
        if userinfo:
            assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", userinfo.group(1)), f"{path}: a password in a URL"


def test_required_secrets_fail_loudly_when_unset(raw: dict[str, Any]) -> None:
    for name in sorted(REQUIRED_SECRETS):
        env = {k: v for k, v in FILLED_ENV.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw, env)
    interpolate(raw, FILLED_ENV)


def test_env_example_and_gitignore(raw: dict[str, Any]) -> None:
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    settings_lines = [line for line in example.splitlines() if line and not line.startswith("#")]
    for line in settings_lines:
        key, _, value = line.partition("=")
        if SECRET_KEY.search(key):
            assert value == "", f".env.example must not carry a value for {key}"
    assert {line.partition("=")[0] for line in settings_lines} >= REQUIRED_SECRETS


def test_demo_block_points_the_workers_at_the_simulator(raw: dict[str, Any], services: dict[str, Any]) -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    block = example.split("# --- demo", 1)[1]
    demo = dict(line[2:].split("=", 1) for line in block.splitlines() if re.match(r"# [A-Z0-9_]+=", line))
    assert demo["COMPOSE_PROFILES"] == "demo" == services["simulator"]["profiles"][0]
    port = resolve_imagegen(_argv(services["simulator"]["command"])).params["port"]
    base = f"http://simulator:{port}"
    assert demo["APIDOT_BASE_URL"] == base
    assert demo["OPENAI_BASE_URL"] == f"{base}/openai/v1" and demo["IMAGE2_BASE_URL"] == f"{base}/image2/api/v1"
    assert demo["IMAGEGEN_ALLOW_PRIVATE_URLS"] == "true"  # the simulator is an http URL on a private network
    # Each variable of the block reaches the containers through x-app-env (COMPOSE_PROFILES is compose's).
    for key in set(demo) - {"COMPOSE_PROFILES"}:
        assert key in raw["x-app-env"], key
    demo_env = {**FILLED_ENV, **demo}
    worker_env = interpolate(raw, demo_env)["services"]["worker-interactive"]["environment"]
    assert worker_env["APIDOT_BASE_URL"] == base
