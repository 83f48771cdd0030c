"""A worker reports ready only with a usable database, checked in its main process before any child starts.

Without this, a worker whose ``DATABASE_URL`` is unreachable, not migrated or a typo starts, says
``ready``, takes messages off the queues and fails every one of them in its children (or forks
children that die at once, over and over). Instead it exits 2 with one line naming ``DATABASE_URL``.
"""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import worker_init

from config.settings import get_settings
from imagegen.errors import DatabaseUnusable
from imagegen.store.db import check_database, prepare_sqlite_directory

#: The exit status of a configuration error (like the CLI's bad input).
CONFIG_ERROR = 2


@worker_init.connect
def _require_database(**_: Any) -> None:
    settings = get_settings()
    url = settings.effective_database_url
    try:
        prepare_sqlite_directory(url, create=settings.database_url is None)
        check_database(url)  # on SQLite this also migrates, once, before the children race to
    except DatabaseUnusable as exc:
        # Celery may have redirected sys.stderr into its logger by now: write to the real one.
        stream = sys.__stderr__ or sys.stderr
        stream.write(f"imagegen worker cannot start: {exc}\n")
        stream.flush()
        raise SystemExit(CONFIG_ERROR) from None
