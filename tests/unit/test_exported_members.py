"""The public names: ``imagegen.__all__`` exactly, and the entry points other programs load by name.

Like httpx's tests/test_exported_members.py
(https://github.com/encode/httpx/blob/master/tests/test_exported_members.py): a name added to or dropped
from the package's surface fails here until this list changes with it. The Celery side (``celery -A
worker``, the task names) is pinned in tests/deploy/test_celery_app.py, since importing it imports Celery.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import pytest

import imagegen

EXPORTED = [
    "ErrorKind",
    "ImageRequest",
    "ImagegenError",
    "JobStatus",
    "RequestInvalid",
    "enqueue",
    "enqueue_batch",
]

#: "module:attribute" strings that something outside this package loads: the console script, uvicorn.
ENTRY_POINTS = ["imagegen.api.app:create_app", "imagegen.cli.main:main"]


def _load(spec: str) -> object:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


def test_all_is_pinned() -> None:
    assert imagegen.__all__ == EXPORTED


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_resolves_and_is_listed(name: str) -> None:
    assert getattr(imagegen, name) is not None
    assert name in dir(imagegen)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'enqueue_many'"):
        imagegen.enqueue_many  # noqa: B018


@pytest.mark.parametrize("spec", ENTRY_POINTS)
def test_entry_points_are_importable_and_callable(spec: str) -> None:
    assert callable(_load(spec))


def test_the_console_script_is_the_cli_main() -> None:
    (script,) = entry_points(group="console_scripts", name="imagegen")
    assert script.value == "imagegen.cli.main:main"
    assert script.load() is _load("imagegen.cli.main:main")
