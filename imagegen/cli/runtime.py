"""The ``Runtime`` of the commands that queue or change jobs (``submit``, ``batch``, ``cancel``, ``retry``,
``resume``, ``api``): one it cannot build (an unusable database, a schema that is behind) is one line, exit 1."""

from __future__ import annotations

from imagegen.cli.output import SOME_FAILED, fail
from imagegen.errors import ImagegenError
from imagegen.runtime import Runtime


def open_runtime() -> Runtime:
    """``Runtime.create()``, or one line on stderr and exit 1."""
    try:
        return Runtime.create()
    except ImagegenError as exc:
        fail(str(exc), SOME_FAILED)
