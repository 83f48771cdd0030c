"""Celery tasks: thin wrappers that take a job id, call the core, and publish what comes next."""
