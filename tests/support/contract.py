"""Facts of the public contract (CLI, task names, job JSON) that several test modules check."""

#: The keys every job JSON object has, at least (CLI ``--json`` and the HTTP API).
JOB_KEYS = frozenset(
    {
        "id",
        "batch_id",
        "status",
        "provider",
        "model",
        "request",
        "metadata",
        "upstream_task_id",
        "upstream_status",
        "result",
        "error",
        "submit_attempts",
        "polls",
        "created_at",
        "submitted_at",
        "finished_at",
        "deadline_at",
    }
)
