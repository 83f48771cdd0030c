"""The app's resources (runtime, publisher, webhook core), built lazily once, and their dependencies."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from fastapi import Depends, Request

from config.settings import Settings
from imagegen.api.feed import ChangeFeed
from imagegen.messages import Publisher
from imagegen.producer import default_publisher
from imagegen.runtime import Runtime
from imagegen.webhooks.inbound import WebhookAccepted, check_token, receive_upstream_webhook


class WebhookReceiver(Protocol):
    """The signature of ``imagegen.webhooks.inbound.receive_upstream_webhook`` (tests inject fakes of it)."""

    def __call__(
        self, rt: Runtime, provider: str, *, token: str | None, headers: Mapping[str, str], body: bytes
    ) -> WebhookAccepted: ...


class TokenCheck(Protocol):
    """The signature of ``imagegen.webhooks.inbound.check_token``: run before the body is read."""

    def __call__(self, rt: Runtime, provider: str, token: str | None) -> str: ...


def _no_token_check(rt: Runtime, provider: str, token: str | None) -> str:
    return ""


@dataclass
class ApiState:
    """Given resources are used as they are; missing ones are built on first use (or at startup)."""

    settings: Settings
    given_runtime: Runtime | None = None
    given_publisher: Publisher | None = None
    given_receiver: WebhookReceiver | None = None
    _runtime: Runtime | None = None
    _publisher: Publisher | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    feed: ChangeFeed = field(init=False)

    def __post_init__(self) -> None:
        self.feed = ChangeFeed(self.settings.redis_url)

    def runtime(self) -> Runtime:
        """The runtime (``Runtime.create`` brings SQLite up to date, refuses an old PostgreSQL schema)."""
        if self.given_runtime is not None:
            return self.given_runtime
        with self._lock:  # sync routes run in a thread pool: build exactly one
            if self._runtime is None:
                self._runtime = Runtime.create(self.settings)
            return self._runtime

    def publisher(self) -> Publisher:
        """The publisher (Celery's, from ``worker/``, unless one was injected)."""
        if self.given_publisher is not None:
            return self.given_publisher
        with self._lock:
            if self._publisher is None:
                self._publisher = default_publisher()
            return self._publisher

    def receiver(self) -> WebhookReceiver:
        """The webhook core (``imagegen.webhooks.inbound``) unless a fake was injected."""
        return self.given_receiver or receive_upstream_webhook

    def token_check(self) -> TokenCheck:
        """The pre-body token check of the webhook core (an injected fake's ``check_token``, if it has one)."""
        if self.given_receiver is None:
            return check_token
        check: TokenCheck = getattr(self.given_receiver, "check_token", _no_token_check)
        return check

    def close(self) -> None:
        """Release what this state built (never what was injected)."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def _runtime(request: Request) -> Runtime:
    return _state(request).runtime()


def _receiver(request: Request) -> WebhookReceiver:
    return _state(request).receiver()


def _token_check(request: Request) -> TokenCheck:
    return _state(request).token_check()


def _publisher(request: Request) -> Publisher:
    return _state(request).publisher()


def _settings(request: Request) -> Settings:
    return _state(request).settings


def _feed(request: Request) -> ChangeFeed:
    return _state(request).feed


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ReceiverDep = Annotated[WebhookReceiver, Depends(_receiver)]
TokenCheckDep = Annotated[TokenCheck, Depends(_token_check)]
FeedDep = Annotated[ChangeFeed, Depends(_feed)]
