"""imagegen-queue's Celery-free core, and its public names (``__all__``). docs/architecture.md maps the
packages; the core never imports Celery.

Producer API::

    from imagegen import ImageRequest, enqueue
    job_id = enqueue(ImageRequest(prompt="a lighthouse at dawn", quality="low"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagegen.errors import ErrorKind, ImagegenError, RequestInvalid
    from imagegen.producer import enqueue, enqueue_batch
    from imagegen.request import ImageRequest
    from imagegen.store.transitions import JobStatus

# Loaded on first use, so light subpackages (the simulator) do not pull in the store and SQLAlchemy.
_EXPORTS = {
    "ErrorKind": "imagegen.errors",
    "ImagegenError": "imagegen.errors",
    "RequestInvalid": "imagegen.errors",
    "JobStatus": "imagegen.store.transitions",
    "enqueue": "imagegen.producer",
    "enqueue_batch": "imagegen.producer",
    "ImageRequest": "imagegen.request",
}
__all__ = [
    "ErrorKind",
    "ImageRequest",
    "ImagegenError",
    "JobStatus",
    "RequestInvalid",
    "enqueue",
    "enqueue_batch",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imagegen' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names are not in the module's namespace until used; dir() and completion list them anyway.
    return sorted({*globals(), *__all__})
