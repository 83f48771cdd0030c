"""Bulk intake through every entry point, against a real broker: every row committed, one submit per job.

``imagegen batch`` (a real process), ``POST /v1/batches`` (the app, with the Celery publisher) and
``enqueue_batch`` each queue 2,000 jobs on a private Redis; the queues are then read back message by
message. Idempotency keys that collide with existing jobs, and a broker that is down, keep their
behaviour. The pipelined messages and their task-sent events are those ``publish`` sends one at a
time, and the batch INSERT writes the rows ``create_job`` writes.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from config.settings import Settings
from imagegen import devstack
from imagegen.api import create_app as create_api
from imagegen.constants import QUEUES, SUBMIT_TASK
from imagegen.errors import IdempotencyConflict
from imagegen.ids import new_job_id
from imagegen.messages import Step, finalize_step, notify_step, poll_step, submit_step
from imagegen.producer import create_batch, create_job, enqueue_batch, publish_submits
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo
from imagegen.store.db import upgrade
from worker.app import create_app as create_celery
from worker.publisher import PIPELINE_FROM, CeleryPublisher

pytestmark = pytest.mark.store

N = 2_000
KEYED = 300
DOWN_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1
_PREFIXES = ("IMAGEGEN_", "APIDOT_", "OPENAI_", "IMAGE2_", "REDIS_URL", "DATABASE_URL")


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    """A private Redis: no worker consumes it, so every message published stays there to be counted."""
    proc, url = devstack.start_redis()
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def db_url(database_factory: Callable[[], str]) -> str:
    url = database_factory()
    upgrade(url)
    return url


@pytest.fixture
def settings(db_url: str, broker_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, redis_url=broker_url, imagegen_home=tmp_path, imagegen_api_tokens="")


@pytest.fixture
def rt(settings: Settings, broker_url: str) -> Iterator[Runtime]:
    runtime = Runtime.create(settings)
    with runtime.session() as s:
        s.execute(sa.text("DELETE FROM jobs"))
    redis.Redis.from_url(broker_url).flushdb()
    yield runtime
    runtime.close()


@pytest.fixture
def publisher(settings: Settings) -> CeleryPublisher:
    return CeleryPublisher(create_celery(settings, name="tests"))


def submits_on_broker(url: str) -> Counter[str]:
    """How many submit messages wait for each job id, over every queue (decoded from kombu's envelopes)."""
    client = redis.Redis.from_url(url)
    found: Counter[str] = Counter()
    for queue in QUEUES:
        for raw in client.lrange(queue, 0, -1):
            envelope = json.loads(raw)
            assert envelope["headers"]["task"] == SUBMIT_TASK
            args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            found[args[0]] += 1
    return found


def rows(rt: Runtime) -> dict[str, tuple[str, str | None]]:
    """Every job's ``(status, batch_id)`` by id."""
    with rt.session() as s:
        result = s.execute(sa.text("SELECT id, status, batch_id FROM jobs")).all()
    return {r[0]: (r[1], r[2]) for r in result}


def reads(url: str) -> int:
    """How many times the broker has read from its clients' sockets so far."""
    return int(redis.Redis.from_url(url).info("stats")["total_reads_processed"])


def assert_queued_once(rt: Runtime, broker_url: str, batch_id: str, ids: list[str], reads_before: int) -> None:
    assert len(ids) == N and len(set(ids)) == N
    assert rows(rt) == {i: ("queued", batch_id) for i in ids}
    # Pipelined: about a hundred reads for N messages and their task.multi events; one at a time costs 2 N.
    assert reads(broker_url) - reads_before < N / 2
    assert submits_on_broker(broker_url) == Counter(ids)  # exactly one submit per job, none for anything else


def prompts(tag: str) -> list[dict[str, str]]:
    return [{"prompt": f"{tag} {i}"} for i in range(N)]


def test_enqueue_batch(rt: Runtime, publisher: CeleryPublisher, broker_url: str) -> None:
    requests = [ImageRequest(priority="batch", **item) for item in prompts("python")]
    before = reads(broker_url)
    batch_id, ids = enqueue_batch(requests, publisher=publisher, runtime=rt)
    assert_queued_once(rt, broker_url, batch_id, ids, before)


def test_post_batches(rt: Runtime, publisher: CeleryPublisher, broker_url: str, settings: Settings) -> None:
    client = TestClient(create_api(runtime=rt, publisher=publisher, settings=settings))
    before = reads(broker_url)
    response = client.post("/v1/batches", json={"requests": prompts("http")})
    assert response.status_code == 202, response.text
    created = response.json()
    assert_queued_once(rt, broker_url, created["batch_id"], created["jobs"], before)


def cli_env(settings: Settings, redis_url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(_PREFIXES)}
    home = str(settings.imagegen_home)
    return {**clean, "DATABASE_URL": str(settings.database_url), "REDIS_URL": redis_url, "IMAGEGEN_HOME": home}


def run_batch(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "imagegen.cli.main", "batch", str(path), "--json"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])


def jsonl(path: Path, items: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def test_cli_batch(rt: Runtime, settings: Settings, broker_url: str, tmp_path: Path) -> None:
    before = reads(broker_url)
    done = run_batch(jsonl(tmp_path / "batch.jsonl", prompts("cli")), cli_env(settings, broker_url))
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert_queued_once(rt, broker_url, created["batch_id"], created["jobs"], before)


def test_keys_colliding_with_existing_jobs_keep_them(rt: Runtime, publisher: CeleryPublisher, broker_url: str) -> None:
    n = KEYED  # a collision inserts one job at a time (as before): a smaller batch keeps this test fast
    requests = [ImageRequest(prompt=f"keyed {i}", idempotency_key=f"k-{i}", priority="batch") for i in range(n)]
    # Four jobs exist already under keys the batch repeats; another tenant's job under one of them must not match.
    existing = {i: create_job(rt, requests[i])[0].id for i in (0, 7, 150, n - 1)}
    other_tenant = create_job(rt, ImageRequest(prompt="keyed 3", idempotency_key="k-3", tenant="t2"))[0].id
    # A key repeated inside the batch for the same request is one job, named twice.
    batch = [*requests, requests[42]]
    batch_id, ids = enqueue_batch(batch, publisher=publisher, runtime=rt)
    assert len(ids) == n + 1 and ids[-1] == ids[42]
    assert all(ids[i] == job_id for i, job_id in existing.items())
    assert other_tenant not in ids
    fresh = [job_id for i, job_id in enumerate(ids[:n]) if i not in existing]
    stored = rows(rt)
    assert len(stored) == n + 1  # the four existing, the other tenant's, and n - 4 new ones
    assert all(stored[job_id] == ("queued", batch_id) for job_id in fresh)
    assert all(stored[job_id][1] is None for job_id in existing.values())  # they stay in no batch
    # Their submits went out when they were created (not here): only the new jobs get one, once each.
    assert submits_on_broker(broker_url) == Counter(fresh)


def test_a_key_naming_another_request_refuses_the_batch(
    rt: Runtime, publisher: CeleryPublisher, broker_url: str
) -> None:
    create_job(rt, ImageRequest(prompt="the first", idempotency_key="taken"))
    requests = [ImageRequest(prompt=f"p {i}") for i in range(N)]
    requests[1500] = ImageRequest(prompt="not the first", idempotency_key="taken")
    with pytest.raises(IdempotencyConflict, match="taken"):
        enqueue_batch(requests, publisher=publisher, runtime=rt)
    assert len(rows(rt)) == 1 and submits_on_broker(broker_url) == Counter()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "imagegen.producer" and r.levelno >= logging.WARNING]


def test_a_down_broker_costs_one_line(rt: Runtime, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    down = CeleryPublisher(create_celery(settings.model_copy(update={"redis_url": DOWN_BROKER}), name="tests-down"))
    batch_id, jobs = create_batch(rt, [ImageRequest(prompt=f"down {i}") for i in range(N)])
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="imagegen.producer"):
        publish_submits(down, jobs)
    # One refused connect, not kombu's connect-retry loop (seconds) nor one try per job.
    assert time.monotonic() - start < 3
    [record] = warnings_of(caplog)
    assert f"{N} queued job(s)" in record.getMessage() and "reconciler will release them" in record.getMessage()
    assert record.exc_info is None
    assert rows(rt) == {j.id: ("queued", batch_id) for j in jobs}


def test_a_down_broker_costs_the_cli_one_line(rt: Runtime, settings: Settings, tmp_path: Path) -> None:
    done = run_batch(jsonl(tmp_path / "batch.jsonl", prompts("cli down")), cli_env(settings, DOWN_BROKER))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and "reconciler will release them" in done.stderr, done.stderr
    created = json.loads(done.stdout)
    assert rows(rt) == {i: ("queued", created["batch_id"]) for i in created["jobs"]}


def test_bulk_rows_are_the_rows_one_job_gets(rt: Runtime) -> None:
    """The batch INSERT writes, column for column, what ``create_job`` writes (defaults and NULLs too)."""
    fields = {
        "prompt": "same",
        "quality": "high",
        "metadata": {"team": "a"},
        "callback_url": "https://example.com/hook",
        "deadline_s": 90.0,
        "tenant": "t1",
        "idempotency_key": "one",
        "fallback": ["image2"],
    }
    # The same key under two tenants: two jobs whose stored requests are equal.
    singles = [create_job(rt, r)[0].id for r in (ImageRequest(**fields), ImageRequest(prompt="bare"))]
    _, batch = create_batch(rt, [ImageRequest(**{**fields, "tenant": "t2"}), ImageRequest(prompt="bare")])
    varying = {"id", "batch_id", "tenant", "created_at", "updated_at", "next_attempt_at", "dispatch_until"}
    varying |= {"deadline_at"}  # compared below as durations from created_at
    with rt.session() as s:
        table = {r._mapping["id"]: dict(r._mapping) for r in s.execute(sa.text("SELECT * FROM jobs"))}
        for single, bulk in zip(singles, [j.id for j in batch], strict=True):
            one, many = table[single], table[bulk]
            assert {k: v for k, v in one.items() if k not in varying} == {
                k: v for k, v in many.items() if k not in varying
            }
            a, b = repo.get_job(s, single), repo.get_job(s, bulk)
            assert a is not None and b is not None
            for column in ("deadline_at", "next_attempt_at", "dispatch_until", "updated_at"):
                assert getattr(a, column) - a.created_at == getattr(b, column) - b.created_at, column


def drained(url: str) -> list[dict[str, Any]]:
    """Every message waiting on any queue (oldest first), taken off the broker; what differs per message
    (ids, delivery tags, the eta's value) is left out."""
    client = redis.Redis.from_url(url)
    out = []
    for queue in QUEUES:
        for raw in reversed(client.lrange(queue, 0, -1)):
            message = json.loads(raw)
            message["body"] = json.loads(base64.b64decode(message["body"]))
            for key in ("id", "root_id"):
                message["headers"].pop(key)
            message["headers"]["eta"] = message["headers"]["eta"] is not None
            for key in ("correlation_id", "delivery_tag"):
                message["properties"].pop(key)
            out.append(message)
        client.delete(queue)
    return out


def sent_events(pubsub: redis.client.PubSub) -> list[dict[str, Any]]:
    """The task-sent events received so far (one per message, or many in a ``task.multi``)."""
    events: list[dict[str, Any]] = []
    while (message := pubsub.get_message(timeout=1)) is not None:
        if message["type"] == "pmessage":
            body = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
            events += body if isinstance(body, list) else [body]
    for event in events:
        for key in ("uuid", "root_id", "timestamp", "clock"):
            event.pop(key)
        event["eta"] = event["eta"] is not None
    return events


def test_many_messages_are_the_messages_one_at_a_time_gives(publisher: CeleryPublisher, broker_url: str) -> None:
    job_id = new_job_id()
    kinds: list[Step] = [
        submit_step(job_id, "batch"),
        submit_step(job_id, "interactive"),
        submit_step(job_id, "interactive", "openai"),  # a synchronous provider's queue: its own time limits
        submit_step(job_id, "batch", "openai", countdown=3),
        poll_step(job_id, 5, force=True),
        finalize_step(job_id),
        notify_step(job_id, 2),
    ]
    steps = kinds * 2
    assert len(steps) >= PIPELINE_FROM  # enough to take the pipelined path
    events = redis.Redis.from_url(broker_url).pubsub()
    events.psubscribe("*")
    assert events.get_message(timeout=5)["type"] == "psubscribe"  # listening before anything is sent
    for step in steps:
        publisher.publish(step)
    one_by_one, announced_one_by_one = drained(broker_url), sent_events(events)
    publisher.publish_many(steps)
    assert drained(broker_url) == one_by_one and len(one_by_one) == len(steps)
    assert sent_events(events) == announced_one_by_one and len(announced_one_by_one) == len(steps)
