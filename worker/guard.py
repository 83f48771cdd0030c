"""The worker's main process never fails on a message, whoever sent it (``celery -A worker worker``).

Celery decodes each task message in the worker's *main* process and pickles its arguments to hand
them to a prefork child. A value nested a few hundred levels deep (a few kilobytes of JSON) makes that
pickling raise ``RecursionError`` there, which Celery treats as unrecoverable: the worker exits, the
message is restored, and the next worker dies on it too. A body that is valid JSON but not a task
message (``5``, ``[1]``) fails there in the same way.

So every task of ours uses ``GuardedRequest``, which clips arguments nested deeper than
``MESSAGE_MAX_DEPTH`` before they reach the pool (a clipped request still reads as too deep, so
``imagegen.enqueue`` rejects it naming the field; its ``argsrepr``/``kwargsrepr`` become the redacted
form), and ``strategy``, which turns any other failure to build a request into Celery's own
invalid-message path: logged, rejected, never requeued.

Celery logs a discarded message (unregistered task name, invalid or undecodable message) with the
first KiB of its body and all its headers, where a plain sender's ``argsrepr`` holds the whole
request; ``MessageBodiesHidden`` keeps those lines to what was wrong, without prompts or URLs.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import InvalidTaskError
from celery.worker.consumer import consumer as celery_consumer
from celery.worker.request import Request
from celery.worker.strategy import default as default_strategy
from kombu.exceptions import ContentDisallowed, DecodeError

from imagegen.jsondepth import MAX_JSON_DEPTH, clip, too_deep
from imagegen.redaction import redact_task_args

log = logging.getLogger(__name__)

#: Levels kept in a message's headers and arguments. A request's own fields sit about four levels down
#: (headers → kwargs → request → field), so a clipped field is still deeper than the request limit;
#: pickling a few dozen levels is safe.
MESSAGE_MAX_DEPTH = MAX_JSON_DEPTH + 16


class GuardedRequest(Request):  # type: ignore[misc]
    """A task request whose arguments are safe to pickle (a clipped one is shown redacted)."""

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        request_dict: dict[str, Any] = self.request_dict
        request_args, request_kwargs = request_dict.get("args"), request_dict.get("kwargs")
        if not isinstance(request_args, list | tuple) or not isinstance(request_kwargs, dict):
            raise InvalidTaskError("task arguments must be a list and keyword arguments an object")
        if not _valid_time_limits(request_dict.get("timelimit")):
            raise InvalidTaskError("timelimit must be two numbers of seconds (or nulls)")
        embed = self._embed()
        deep = too_deep(request_dict, MESSAGE_MAX_DEPTH) or too_deep(embed, MESSAGE_MAX_DEPTH)
        if deep is not None:
            log.warning(
                "task %s[%s]: message nested deeper than %d levels, clipped before the pool",
                self._type,
                self.id,
                MESSAGE_MAX_DEPTH,
            )
            request_dict = clip(request_dict, MESSAGE_MAX_DEPTH)
            self._request_dict = request_dict
            self._args, self._kwargs = request_dict["args"], request_dict["kwargs"]
            # Hand the child the clipped arguments themselves instead of the raw body it would re-decode.
            self._body = (self._args, self._kwargs, clip(embed, MESSAGE_MAX_DEPTH))
            self._decoded = True
            self._content_type = self._content_encoding = None
        if deep is not None or not isinstance(self.argsrepr, str) or not isinstance(self.kwargsrepr, str):
            # Task events carry these to monitors: strings only, and never the shape of a hostile value.
            self._argsrepr, self._kwargsrepr = redact_task_args(self._type, self._args, self._kwargs)
            request_dict["argsrepr"], request_dict["kwargsrepr"] = self._argsrepr, self._kwargsrepr

    def _embed(self) -> Any:
        body = self._body if self._decoded else self._message.payload
        embed = body[2] if isinstance(body, list | tuple) and len(body) == 3 else None
        if embed is not None and not isinstance(embed, dict):
            raise InvalidTaskError("task message options must be an object")
        for name in ("callbacks", "errbacks", "chain", "chord"):
            # Celery runs these after the task (in the child and in the main process's pool callback),
            # where a malformed one fails with a traceback instead of being refused with the message.
            value = (embed or {}).get(name)
            signatures = [value] if name == "chord" else value
            if value is not None and not (isinstance(signatures, list) and all(map(_signature, signatures))):
                raise InvalidTaskError(f"{name} must be task signatures")
        return embed


def _signature(value: Any) -> bool:
    """Whether ``value`` has the fields Celery needs to send a signature (it checks nothing itself)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("task"), str)
        and isinstance(value.get("args"), list)
        and isinstance(value.get("kwargs"), dict)
        and isinstance(value.get("options"), dict)
    )


def _valid_time_limits(value: Any) -> bool:
    # They reach the pool's timers in the main process, where a string would fail much later.
    if value is None:
        return True
    if not isinstance(value, list | tuple) or len(value) != 2:
        return False
    return all(v is None or (isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1e9) for v in value)


def strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy, with every failure to build a request turned into an invalid message."""
    handle = default_strategy(task, app, consumer, **kwargs)

    def guarded(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **options: Any) -> Any:
        try:
            return handle(message, body, ack, reject, callbacks, **options)
        except (InvalidTaskError, ContentDisallowed, DecodeError):
            raise  # the consumer logs and rejects these itself
        except Exception as exc:
            raise InvalidTaskError(f"malformed {task.name} message: {exc.__class__.__name__}: {exc}") from exc

    return guarded


class GuardedTask(Task):  # type: ignore[misc]
    """The base of every ``imagegen.*`` task (``Celery(task_cls=...)`` in worker/app.py)."""

    Request = "worker.guard:GuardedRequest"
    Strategy = "worker.guard:strategy"


class MessageBodiesHidden(logging.Filter):
    """Rewrites Celery's discarded-message log lines so that they carry no body and no headers."""

    _SHORT = {
        celery_consumer.UNKNOWN_TASK_ERROR: ("discarded a message for unregistered task %.200s (body not logged)", 1),
        celery_consumer.INVALID_TASK_ERROR: ("discarded an invalid task message: %.300s (body not logged)", 1),
        celery_consumer.MESSAGE_DECODE_ERROR: ("discarded a message that cannot be decoded: %.200s", 1),
        celery_consumer.UNKNOWN_FORMAT: ("discarded a message that is not a task message (body not logged)", 0),
    }

    def filter(self, record: logging.LogRecord) -> bool:
        short = self._SHORT.get(record.msg) if isinstance(record.msg, str) else None
        if short is not None:
            record.msg, kept = short
            record.args = tuple(record.args or ())[:kept] if isinstance(record.args, tuple) else ()
            record.exc_info = record.exc_text = None  # exception texts of hostile input, one line is enough
        return True


celery_consumer.logger.addFilter(MessageBodiesHidden())
