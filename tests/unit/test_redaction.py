"""Task-argument redaction for monitors (every ``imagegen.*`` task): job ids only, no prompts, no URLs."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.ids import is_job_id
from imagegen.redaction import format_task, redact_task_args

JOB = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
JOB2 = str(uuid.UUID(int=0x1234, version=4))
REQUEST = {
    "prompt": "a secret product launch photo",
    "image_urls": ["https://private.example.com/leak.png"],
    "callback_url": "https://hooks.example.com/cb?token=abcdef",
}


# --- fixed examples -------------------------------------------------------------------------------


def test_single_job_id_argument() -> None:
    assert redact_task_args("imagegen.poll", (JOB,), {}) == (f"('{JOB}',)", "{}")
    assert redact_task_args("imagegen.poll", [JOB], None) == (f"('{JOB}',)", "{}")


def test_job_id_keyword() -> None:
    assert redact_task_args("imagegen.submit", (), {"job_id": JOB}) == ("()", f"{{'job_id': '{JOB}'}}")


def test_enqueue_by_name_hides_the_request() -> None:
    argsrepr, kwargsrepr = redact_task_args("imagegen.enqueue", (), {"request": REQUEST, "job_id": JOB})
    assert argsrepr == "()"
    assert kwargsrepr == f"{{'request': <redacted object: 3 fields>, 'job_id': '{JOB}'}}"
    for secret in ("secret product", "private.example.com", "token=abcdef", "hooks.example.com"):
        assert secret not in argsrepr + kwargsrepr


def test_positional_mix() -> None:
    argsrepr, _ = redact_task_args("t", (JOB, "a prompt", 3, None, [JOB2], REQUEST, JOB2), {})
    assert argsrepr == f"('{JOB}', <redacted>, <redacted>, None, <redacted>, <redacted object: 3 fields>, '{JOB2}')"


@pytest.mark.parametrize(
    "not_a_job_id",
    [
        JOB.upper(),  # not canonical
        JOB.replace("-", ""),
        "{" + JOB + "}",
        "urn:uuid:" + JOB,
        " " + JOB,
        JOB + "\n",
        "sk-live-0123456789",
        "https://example.com/a.png",
    ],
)
def test_only_canonical_uuid_strings_are_shown(not_a_job_id: str) -> None:
    assert not is_job_id(not_a_job_id)
    argsrepr, kwargsrepr = redact_task_args("t", (not_a_job_id,), {"x": not_a_job_id})
    assert argsrepr == "(<redacted>,)"
    assert kwargsrepr == "{'x': <redacted>}"


def test_uuid_objects_are_not_strings() -> None:
    assert redact_task_args("t", (uuid.UUID(JOB),), {}) == ("(<redacted>,)", "{}")


@pytest.mark.parametrize("args", ["a prompt string", b"bytes", 42, None, {"prompt": "x"}, {JOB}])
def test_non_sequence_args_show_nothing(args: Any) -> None:
    assert redact_task_args("t", args, {})[0] == "()"


@pytest.mark.parametrize("kwargs", ["prompt=x", [("prompt", "x")], None, 3])
def test_non_dict_kwargs_show_nothing(kwargs: Any) -> None:
    assert redact_task_args("t", (), kwargs)[1] == "{}"


# --- format_task (Flower hook) --------------------------------------------------------------------


def _flower_task(args: Any, kwargs: Any) -> SimpleNamespace:
    return SimpleNamespace(name="imagegen.enqueue", args=args, kwargs=kwargs, uuid="u")


def test_format_task_redacts_repr_strings() -> None:
    task = _flower_task(repr((JOB, "a secret prompt")), repr({"request": REQUEST, "job_id": JOB}))
    out = format_task(task)
    assert out is task
    assert out.args == f"('{JOB}', <redacted>)"
    assert out.kwargs == f"{{'request': <redacted object: 3 fields>, 'job_id': '{JOB}'}}"


def test_format_task_redacts_python_values() -> None:
    task = format_task(_flower_task([JOB, "https://x.example/a.png"], {"prompt": "secret"}))
    assert (task.args, task.kwargs) == (f"('{JOB}', <redacted>)", "{'prompt': <redacted>}")


@pytest.mark.parametrize("args", ["<object at 0x7f>", "('unterminated", "('a', ...", "f(1)", "\x00"])
def test_format_task_unparseable_reprs_show_nothing(args: str) -> None:
    task = format_task(_flower_task(args, "{'k': 'secret value'}"))
    assert task.args == "()"
    assert "secret value" not in task.args + task.kwargs


def test_format_task_fails_closed() -> None:
    task = format_task(_flower_task("({[]: 'a secret prompt'},)", "{}"))
    assert "secret" not in task.args


# --- property: nothing but job ids leaks ----------------------------------------------------------

MARK = "Zq"  # two letters that never occur in the redaction vocabulary ("<redacted object: N fields>", "None")
secrets = st.text(min_size=2, max_size=30).map(lambda s: MARK + s + MARK)
job_ids = st.uuids(version=4).map(str)
leaves = st.one_of(
    secrets, job_ids, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.binary(max_size=8)
)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(secrets | job_ids, children, max_size=4)
    ),
    max_leaves=20,
)
kwarg_names = st.from_regex(r"\A[a-z_][a-z0-9_]{0,15}\Z").filter(lambda s: "zq" not in s)


@settings(max_examples=300, deadline=None)
@given(args=st.lists(values, max_size=5) | st.tuples(values), kwargs=st.dictionaries(kwarg_names, values, max_size=5))
def test_no_secret_reaches_the_monitor(args: Any, kwargs: dict[str, Any]) -> None:
    argsrepr, kwargsrepr = redact_task_args("any.task", args, kwargs)
    out = argsrepr + kwargsrepr
    assert MARK not in out
    # Exactly the top-level job ids are shown, each quoted, in order.
    shown = [a for a in args if isinstance(a, str) and is_job_id(a)]
    assert argsrepr.count("'") == 2 * len(shown)
    for job_id in shown:
        assert f"'{job_id}'" in argsrepr


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _replace_strings(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, dict):
        return {_replace_strings(k, mapping): _replace_strings(v, mapping) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_replace_strings(v, mapping) for v in value)
    if isinstance(value, list):
        return [_replace_strings(v, mapping) for v in value]
    return value


any_text_values = st.recursive(
    st.one_of(st.text(max_size=12), job_ids, st.none(), st.integers()),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(args=st.lists(any_text_values, max_size=4), kwargs=st.dictionaries(kwarg_names, any_text_values, max_size=4))
def test_output_does_not_depend_on_non_job_id_strings(args: list[Any], kwargs: dict[str, Any]) -> None:
    """Non-interference: replacing every non-job-id string (injectively) leaves the output unchanged.

    This is the exact form of "the output never contains a prompt, URL or key", immune to accidental
    substring matches (e.g. a 4-character string that happens to occur inside a shown UUID).
    """
    originals = sorted({s for s in _strings(args) + _strings(list(kwargs.values())) if not is_job_id(s)})
    mapping = {s: f"other-{i}" for i, s in enumerate(originals)}
    replaced_kwargs = {k: _replace_strings(v, mapping) for k, v in kwargs.items()}
    replaced = redact_task_args("t", _replace_strings(args, mapping), replaced_kwargs)
    assert replaced == redact_task_args("t", args, kwargs)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=4, max_size=40).filter(lambda s: not is_job_id(s)))
def test_a_lone_secret_never_appears(secret: str) -> None:
    argsrepr, kwargsrepr = redact_task_args("t", (secret, [secret], {secret: secret}), {"request": secret})
    assert argsrepr == "(<redacted>, <redacted>, <redacted object: 1 fields>)"
    assert kwargsrepr == "{'request': <redacted>}"
