"""Per-process resources: settings, DB engine, httpx client and provider clients.

Built lazily per PID, so a forked Celery child never reuses its parent's connection pools
(neither httpx's nor SQLAlchemy's pools are fork-safe).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

import httpx
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings, get_settings
from imagegen.net.fetch import make_client
from imagegen.net.urls import FetchPolicy
from imagegen.providers import Provider, build_providers
from imagegen.providers.limits import UNLIMITED, LimitConfig, RateLimiter
from imagegen.storage import ResultStore, build_store
from imagegen.store import changes
from imagegen.store.announcer import Announcer
from imagegen.store.db import (
    ensure_schema,
    make_engine,
    make_read_sessionmaker,
    make_sessionmaker,
    prepare_sqlite_directory,
    session_scope,
)
from imagegen.store.models import utcnow
from imagegen.store.softredis import fast_client
from imagegen.timing.durations import DurationLearner


@dataclass
class Runtime:
    """Everything the core needs to serve jobs in this process."""

    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    http: httpx.Client
    providers: dict[str, Provider]
    store: ResultStore
    rng: random.Random = field(default_factory=random.Random)
    _read_sessions: sessionmaker[Session] | None = None
    _fetch_client: httpx.Client | None = None
    _redis: redis.Redis | None = None
    _limiter: RateLimiter | None = None
    _learner: DurationLearner | None = None
    _announcer: Announcer | None = None

    @classmethod
    def create(cls, settings: Settings | None = None, *, check_schema: bool = True) -> Runtime:
        """Build the resources (and bring an SQLite schema up to date)."""
        settings = settings or get_settings()
        prepare_sqlite_directory(settings.effective_database_url, create=settings.database_url is None)
        engine = make_engine(settings.effective_database_url)
        if check_schema:
            ensure_schema(engine)
        http = httpx.Client(
            timeout=httpx.Timeout(settings.http.read_s, connect=settings.http.connect_s),
            follow_redirects=False,
            headers={"User-Agent": "imagegen-queue/0.1"},
        )
        store = build_store(settings)
        providers = build_providers(settings, http, read_upload=store.get)
        return cls(settings, engine, make_sessionmaker(engine), http, providers, store)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One database transaction; the jobs it changed are announced once it has committed."""
        with session_scope(self.sessions) as session:
            yield session
        changed = changes.take(session)
        if changed:
            self.announcer.announce(changed)

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """One read-only transaction: on SQLite it never waits for (nor takes) the write lock."""
        if self._read_sessions is None:
            self._read_sessions = make_read_sessionmaker(self.engine)
        with session_scope(self._read_sessions) as session:
            yield session

    def provider(self, name: str) -> Provider:
        """The client for ``name`` (KeyError for an unconfigured provider)."""
        return self.providers[name]

    @property
    def fetch_policy(self) -> FetchPolicy:
        """How result files are downloaded (URL checks, size cap, image types only, the download budget)."""
        settings = self.settings
        timeout = httpx.Timeout(settings.http.read_s, connect=settings.http.connect_s)
        return FetchPolicy(
            allow_private=settings.http.allow_private_urls,
            max_bytes=settings.http.max_result_bytes,
            timeout=timeout,
            max_seconds=settings.http.download_max_s,
        )

    @property
    def fetch_client(self) -> httpx.Client:
        """The process's client for URLs we do not control (results, callbacks), built once."""
        if self._fetch_client is None:
            self._fetch_client = make_client(self.fetch_policy)
        return self._fetch_client

    @property
    def redis(self) -> redis.Redis:
        """A Redis client with short timeouts for the limiter and the learner (they fail soft)."""
        if self._redis is None:
            self._redis = fast_client(self.settings.redis_url)
        return self._redis

    @property
    def announcer(self) -> Announcer:
        """Publishes committed job changes for the API's waiting requests (``store.changes``)."""
        if self._announcer is None:
            self._announcer = Announcer(self.redis)
        return self._announcer

    @property
    def limiter(self) -> RateLimiter | None:
        """The global rate limiter: the rates of ``IMAGEGEN_PROVIDER_LIMITS``; every other provider key is
        unlimited until its first 429, then runs at a rate learned from it (see ``providers.limits``)."""
        if self._limiter is None:
            # Reconciler-released waits arrive up to one run late, in a bunch: the batch horizon covers that.
            horizon = max(2.0, self.settings.timers.reconcile_interval_s + 1.0)
            rates = {
                provider: LimitConfig.from_mapping(limits, batch_horizon_s=horizon)
                for provider, limits in self.settings.provider_limits.items()
            }
            self._limiter = RateLimiter(self.redis, rates=rates, default=replace(UNLIMITED, batch_horizon_s=horizon))
        return self._limiter

    @property
    def learner(self) -> DurationLearner | None:
        """The running-median learner of durations (``IMAGEGEN_LEARN_DURATIONS``)."""
        if not self.settings.polling.learn_durations:
            return None
        if self._learner is None:
            self._learner = DurationLearner(self.redis)
        return self._learner

    def now(self) -> datetime:
        """The current time (UTC, aware)."""
        return utcnow()

    def close(self) -> None:
        """Release pools and sockets."""
        self.http.close()
        if self._fetch_client is not None:
            self._fetch_client.close()
        if self._redis is not None:
            self._redis.close()
        self.engine.dispose()


_current: tuple[int, Runtime] | None = None


def get_runtime() -> Runtime:
    """This process's runtime, created on first use after any fork."""
    global _current
    if _current is None or _current[0] != os.getpid():
        _current = (os.getpid(), Runtime.create())
    return _current[1]


def close_runtime() -> None:
    """Dispose of this process's runtime (worker shutdown)."""
    global _current
    if _current is not None and _current[0] == os.getpid():
        _current[1].close()
    _current = None
