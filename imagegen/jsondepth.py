"""Bounded JSON nesting: measure, clip and parse without recursion, so no input can exhaust the stack.

Python's ``json``, ``pickle``, ``copy.deepcopy`` and ``dataclasses.asdict`` all recurse once per level
of nesting, and a few hundred levels of ``{"a": {"a": ...}}`` (a few kilobytes) raise ``RecursionError``
wherever such a value travels next. Everything here walks with an explicit stack instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

#: The deepest nesting accepted in any request value (``{}`` is one level, ``{"a": {}}`` two).
MAX_JSON_DEPTH = 32

Path = tuple[str | int, ...]

_CONTAINERS = (Mapping, list, tuple)


class JsonTooDeep(ValueError):
    """JSON text nested too deeply to parse safely; ``path`` leads to the first level past the limit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__("nested too deeply")


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> Path | None:
    """The path to the first container nested more than ``limit`` levels deep in ``value``, or None."""
    if not isinstance(value, _CONTAINERS):
        return None
    stack: list[tuple[Any, Path]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= limit:
            return path  # ``node`` is a container at level limit + 1
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        for key, child in items:
            if isinstance(child, _CONTAINERS):
                stack.append((child, (*path, key if isinstance(key, int) else str(key))))
    return None


def clip(value: Any, limit: int) -> Any:
    """A copy of ``value`` whose containers below ``limit`` levels are emptied (``{}``/``[]``).

    A clipped value is still ``limit + 1`` levels deep, so whoever validates it still sees it as too deep;
    it just can no longer break a serializer on the way there. Tuples become lists (JSON has no tuples).
    """
    if not isinstance(value, _CONTAINERS):
        return value
    root: Any = {} if isinstance(value, Mapping) else []
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, level = stack.pop()
        items = source.items() if isinstance(source, Mapping) else enumerate(source)
        for key, child in items:
            if isinstance(child, _CONTAINERS):
                copy: Any = {} if isinstance(child, Mapping) else []
                if level < limit:
                    stack.append((child, copy, level + 1))
                child = copy
            if isinstance(target, dict):
                target[key] = child
            else:
                target.append(child)
    return root


def loads(text: str | bytes, *, limit: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """``json.loads``, but nesting the decoder cannot handle raises ``JsonTooDeep`` naming where it is.

    Nesting the decoder does handle is returned as parsed (validation then names the deep field); only
    when ``json`` itself runs out of stack is the raw text scanned for the path past ``limit``.
    """
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        raise JsonTooDeep(text_too_deep(raw, limit) or ()) from None


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]', re.DOTALL)


def text_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> Path | None:
    """The path to the first container nested past ``limit`` levels in JSON ``text``, or None.

    A tokenizer for structure only (strings, brackets, colons and commas): enough to follow keys and
    indices on malformed or too-deep text that ``json`` refuses to parse.
    """
    # Each open container: [is_object, current key or index, expecting a key].
    stack: list[list[Any]] = []
    last_string: str | None = None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "{[":
            if len(stack) >= limit:
                return tuple(entry[1] for entry in stack)
            stack.append([token == "{", 0 if token == "[" else "", token == "{"])
        elif token in "}]":
            if stack:
                stack.pop()
        elif token == ":":
            if stack and stack[-1][0] and last_string is not None:
                stack[-1][1], stack[-1][2] = last_string, False
        elif token == ",":
            if stack and stack[-1][0]:
                stack[-1][2] = True
            elif stack:
                stack[-1][1] += 1
        else:
            last_string = _string_value(token)
    return None


def _string_value(token: str) -> str:
    try:
        value = json.loads(token)
    except ValueError:
        return token[1:-1]
    return value if isinstance(value, str) else token[1:-1]
