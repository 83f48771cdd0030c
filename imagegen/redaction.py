"""How task arguments look to monitors (Flower, ``celery events``): job ids only, never request bodies."""

from __future__ import annotations

from typing import Any

from imagegen.ids import is_job_id


def _safe(value: Any) -> str:
    if isinstance(value, str) and is_job_id(value):
        return repr(value)
    if isinstance(value, dict):
        return f"<redacted object: {len(value)} fields>"
    if value is None:
        return "None"
    return "<redacted>"


def redact_task_args(task: Any, args: Any, kwargs: Any) -> tuple[str, str]:
    """``(argsrepr, kwargsrepr)`` showing job ids and nothing else."""
    arg_list = list(args) if isinstance(args, list | tuple) else []
    kw = kwargs if isinstance(kwargs, dict) else {}
    argsrepr = "(" + ", ".join(_safe(a) for a in arg_list) + ("," if len(arg_list) == 1 else "") + ")"
    kwargsrepr = "{" + ", ".join(f"{k!r}: {_safe(v)}" for k, v in kw.items()) + "}"
    return argsrepr, kwargsrepr


def format_task(task: Any) -> Any:
    """Flower's ``format_task`` hook: redact the arguments of every task, ours or anyone's."""
    name = getattr(task, "name", None)
    try:
        import ast

        args = ast.literal_eval(task.args) if isinstance(task.args, str) else task.args
        kwargs = ast.literal_eval(task.kwargs) if isinstance(task.kwargs, str) else task.kwargs
    except Exception:  # whatever Flower hands us, never fall back to showing the raw arguments
        args, kwargs = (), {}
    task.args, task.kwargs = redact_task_args(name, args, kwargs)
    return task
