"""Job ids: making and checking UUID4 strings."""

from __future__ import annotations

import uuid


def new_job_id() -> str:
    """A fresh job id."""
    return str(uuid.uuid4())


def is_job_id(value: object) -> bool:
    """Whether ``value`` is a canonical (lower-case, hyphenated) UUID string."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
