"""kombu's Redis transport with two fixes: a worker survives Redis going away while it holds messages,
and survives a message on its queues that is not a kombu message at all.

On a broker connection loss Celery closes the connection (``on_connection_error_after_connected``);
kombu then closes the default channel, whose QoS tries to restore the unacknowledged messages through
a connection whose transport was already detached, and raises ``AttributeError`` ('NoneType' object
has no attribute 'hostname'). That is not a connection error, so Celery treats it as unrecoverable and
the worker process exits (seen in our Redis-restart chaos test; same family as kombu#582/#970).

Skipping that restore loses nothing: the messages stay in Redis's unacked index (restored after the
visibility timeout) if Redis survived, and the reconciler re-releases their jobs from the database
within seconds either way.

A list entry that is not a kombu envelope (not JSON, JSON nested past the decoder's recursion limit, a
JSON array) makes ``_brpop_read`` raise in the worker's main process, which Celery also treats as
unrecoverable. Anyone who can write to Redis can push one, so such an entry is logged and dropped.
"""

from __future__ import annotations

import logging
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    """Redis QoS whose restore on close tolerates an already-detached connection."""

    def restore_unacked(self, client: Any = None) -> None:
        """Restore delivered-but-unacked messages, unless the connection is already gone."""
        try:
            super().restore_unacked(client)
        except AttributeError:
            log.warning("broker connection already closed; unacked messages left to the reconciler")
            self._delivered.clear()


class Channel(kombu_redis.Channel):
    """Redis channel using the tolerant QoS, dropping queue entries that are not messages."""

    QoS = QoS

    def _brpop_read(self, **options: Any) -> Any:
        try:
            return super()._brpop_read(**options)
        except (Empty, *self.connection_errors, *self.connection.channel_errors):
            raise
        except Exception as exc:  # the entry has left the list already; nothing can ever deliver it
            log.error("dropped a queue entry that is not a valid message: %s: %.200s", exc.__class__.__name__, exc)
            raise Empty() from None


class Transport(kombu_redis.Transport):
    """Selected by ``broker_transport = "worker.transport:Transport"`` (see config/celery.py)."""

    Channel = Channel
