"""Nesting limits: measured, clipped and located without recursion, whatever the depth."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegen.errors import FieldError, RequestInvalid
from imagegen.jsondepth import MAX_JSON_DEPTH, JsonTooDeep, clip, loads, text_too_deep, too_deep
from imagegen.request import ImageRequest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=30,
)


def depth(value: Any) -> int:
    """The reference definition, recursive (fine for the small values hypothesis makes)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nested(levels: int, key: str = "a") -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {key: value}
    return value


def nested_text(levels: int) -> str:
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


@given(json_values, st.integers(min_value=1, max_value=6))
def test_too_deep_matches_the_recursive_definition(value: Any, limit: int) -> None:
    path = too_deep(value, limit)
    assert (path is not None) == (depth(value) > limit)
    assert (text_too_deep(json.dumps(value), limit) is not None) == (depth(value) > limit)


@given(json_values, st.integers(min_value=1, max_value=6))
def test_clip_keeps_shallow_values_and_bounds_deep_ones(value: Any, limit: int) -> None:
    clipped = clip(value, limit)
    if depth(value) <= limit:
        assert clipped == value
    else:
        assert depth(clipped) == limit + 1  # still too deep for whoever validates it


def test_limits_are_exact() -> None:
    assert too_deep(nested(MAX_JSON_DEPTH)) is None
    assert too_deep(nested(MAX_JSON_DEPTH + 1)) == ("a",) * MAX_JSON_DEPTH
    assert too_deep({"x": 1, "meta": [0, nested(3)]}, 3) == ("meta", 1, "a")


def test_nothing_recurses_at_any_depth() -> None:
    deep: Any = []
    for _ in range(200_000):
        deep = [deep]
    assert too_deep(deep) is not None
    assert depth(clip(deep, 40)) == 41
    assert text_too_deep("[" * 200_000 + "]" * 200_000) == (0,) * MAX_JSON_DEPTH


def test_loads_names_the_path_json_cannot_parse() -> None:
    text = '{"prompt": "a, b: {c}", "n": [1, 2], "metadata": ' + nested_text(100_000) + "}"
    with pytest.raises(JsonTooDeep) as info:
        loads(text)
    assert info.value.path[:2] == ("metadata", "a")
    batch = '{"requests": [{"prompt": "x"}, {"prompt": "y", "fallback": ' + "[" * 5000 + "]" * 5000 + "}]}"
    with pytest.raises(JsonTooDeep) as info:
        loads(batch.encode())
    assert info.value.path[:4] == ("requests", 1, "fallback", 0)
    assert loads('{"a": [1]}') == {"a": [1]}


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 500, 5000])
def test_request_metadata_nested_too_deeply(levels: int) -> None:
    with pytest.raises(RequestInvalid) as info:
        ImageRequest.from_dict({"prompt": "x", "metadata": nested(levels), "size": "nope"})
    assert FieldError("metadata", "nested too deeply") in info.value.errors
    assert any(e.field == "size" for e in info.value.errors)  # every problem is listed
    assert ImageRequest.from_dict({"prompt": "x", "metadata": nested(MAX_JSON_DEPTH)}).metadata is not None
