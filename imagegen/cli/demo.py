"""``imagegen demo``: the whole pipeline on one laptop, against the simulator, in about a minute."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from config.settings import get_settings
from imagegen import devstack

#: A mixed batch: plain jobs plus one of each scenario the worker must survive.
SCENARIOS: list[dict[str, Any]] = [
    {"prompt": "a lighthouse at dawn, watercolor", "quality": "low"},
    {"prompt": "a red fox in fresh snow", "quality": "medium", "size": "3:2"},
    {"prompt": "isometric city block at night", "quality": "high", "resolution": "2K", "size": "16:9"},
    {"prompt": "two 429s, then accepted [[429x2]]"},
    {"prompt": "429 with an HTTP-date Retry-After [[429x1:date]]"},
    {"prompt": "a 429 without Retry-After [[429x1:noheader]]"},
    {"prompt": "two 500s, then accepted [[500x2]]"},
    {"prompt": "a 503 then accepted [[503x1]]"},
    {"prompt": "status endpoint flaky [[poll502x2]]"},
    {"prompt": "renders, then the upstream fails it [[statusfail]]"},
    {"prompt": "status answer in shape B [[shapeb]]"},
    {"prompt": "answers with code 0 [[code0]]"},
    {"prompt": "unknown non-terminal statuses [[processing]]"},
    {
        "prompt": "an edit of a reference image",
        "model": "gpt-image-2-edit",
        "image_urls": ["https://example.com/reference.png"],
    },
    {"prompt": "a custom size", "size": "2304x2048", "resolution": "2K"},
    {"prompt": "blocked by moderation [[moderation]]"},
    {"prompt": "a slow render [[slow:6]]", "quality": "high"},
    {"prompt": "a malformed submit answer, then fine [[malformedx1]]"},
    {"prompt": "the invalid line: bad size", "size": "banana"},
    {"prompt": "a paper crane on a desk", "metadata": {"customer": "demo"}},
]


def run_demo(count: int = 20) -> int:
    """Start everything, run the batch with --skip-invalid --wait, print the table, stop everything."""
    settings = get_settings()
    workdir = Path(tempfile.mkdtemp(prefix="imagegen-demo-"))
    logs = workdir / "logs"
    logs.mkdir()
    started: list[devstack.Process] = []
    try:
        redis_url = settings.redis_url
        if devstack.redis_reachable(redis_url):
            click.echo(f"redis: using {redis_url}")
        else:
            proc, redis_url = devstack.start_redis(log_dir=logs)
            started.append(proc)
            click.echo(f"redis: started a private redis-server at {redis_url}")
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "DATABASE_URL": f"sqlite:///{workdir / 'demo.db'}",
            "IMAGEGEN_HOME": str(workdir),
            "APIDOT_API_KEY": "demo-key",
            "IMAGEGEN_ALLOW_PRIVATE_URLS": "true",
            "IMAGEGEN_EXPECTED_DURATION_S": "2",
            "IMAGEGEN_POLL_MIN_S": "0.5",
            "IMAGEGEN_RECONCILE_INTERVAL_S": "1",
            "IMAGEGEN_BACKOFF_CAP_S": "4",
            "SIM_DURATION_S": "uniform:1:4",
        }
        services = devstack.start_services(env, log_dir=logs, concurrency=2)
        started += services.processes
        env = services.env
        click.echo(f"simulator: {services.sim_url}")
        click.echo(f"worker and beat started (logs in {logs})")
        batch = workdir / "batch.jsonl"
        lines = [SCENARIOS[i % len(SCENARIOS)] for i in range(max(count, 1))]
        batch.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        click.echo(f"running a batch of {len(lines)} requests (one invalid line on purpose)\n")
        begin = time.monotonic()
        code = subprocess.run(
            [
                sys.executable,
                "-m",
                "imagegen.cli.main",
                "batch",
                str(batch),
                "--skip-invalid",
                "--wait",
                "--timeout",
                "180",
            ],
            env=env,
            check=False,
        ).returncode
        click.echo(
            f"\nbatch finished in {time.monotonic() - begin:.1f}s (exit code {code}: 1 means some jobs "
            "failed on purpose)"
        )
        return 0 if code in (0, 1) else code
    finally:
        for proc in reversed(started):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        click.echo("stopped worker, beat, simulator" + (" and redis" if started and started[0].name == "redis" else ""))


@click.command()
@click.option("--jobs", "count", type=int, default=20, help="How many requests in the demo batch.")
def demo(count: int) -> None:
    """Start Redis (if needed), the simulator, a worker and beat; run a mixed batch; print the results."""
    raise SystemExit(run_demo(count))
