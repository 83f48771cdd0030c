"""Flower configuration, read from the working directory by ``celery -A worker flower`` (docs/flower.md).

``format_task`` must be a function, so it is set here rather than on the command line: it redacts the
arguments of every task shown in Flower's web UI, including messages other services send by name.
"""

from imagegen.redaction import format_task  # noqa: F401
