"""Request bodies: parse JSON strictly and turn ``RequestInvalid`` into FastAPI's 422 shape."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from imagegen.errors import FieldError
from imagegen.jsondepth import MAX_JSON_DEPTH, JsonTooDeep, too_deep
from imagegen.jsondepth import loads as bounded_loads

Loc = tuple[str | int, ...]


def problem(loc: Loc, msg: str, kind: str = "value_error") -> dict[str, Any]:
    """One entry of a 422 ``detail`` list."""
    return {"loc": list(loc), "msg": msg, "type": kind}


def field_loc(prefix: Loc, field: str) -> Loc:
    """``image_urls.0`` under ``("body",)`` → ``("body", "image_urls", 0)``; ``request`` is the body itself."""
    if field == "request":
        return prefix
    return prefix + tuple(int(part) if part.isdigit() else part for part in field.split("."))


def field_problems(prefix: Loc, errors: Sequence[FieldError]) -> list[dict[str, Any]]:
    """The 422 entries for one request's field errors, located under ``prefix``."""
    return [problem(field_loc(prefix, e.field), f"{e.field}: {e.message}") for e in errors]


def invalid(problems: list[dict[str, Any]]) -> RequestValidationError:
    """The exception FastAPI renders as ``422 {"detail": problems}``."""
    return RequestValidationError(problems)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def json_body(request: Request) -> Any:
    """The request body as JSON (a dependency), or a 422 naming ``body``.

    Strict on purpose: NaN/Infinity are rejected (not JSON), and so are lone surrogate escapes, which
    Python decodes happily but no database can store (they would surface later as a 500).
    """
    raw = await request.body()
    try:
        data = bounded_loads(raw, parse_constant=_reject_constant)
        # Past this depth no field can be valid; stop before anything recursive walks it.
        path = too_deep(data, _BODY_MAX_DEPTH)
        if path is not None:
            raise JsonTooDeep(path)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except JsonTooDeep as exc:
        raise invalid([_too_deep(exc.path)]) from None
    except UnicodeError:
        msg = "body: must be UTF-8 JSON without lone surrogates"
        raise invalid([problem(("body",), msg, "json_invalid")]) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; so are huge ints
        raise invalid([problem(("body",), f"body: not valid JSON ({_reason(exc)})", "json_invalid")]) from None
    return data


#: A batch item's fields sit three levels into the body (body → requests → item).
_BODY_MAX_DEPTH = MAX_JSON_DEPTH + 4


def _too_deep(path: tuple[str | int, ...]) -> dict[str, Any]:
    """The 422 entry naming the field that holds JSON nested too deeply (``metadata: nested too deeply``)."""
    in_batch = len(path) >= 3 and path[0] == "requests" and isinstance(path[1], int)
    named = bool(path) and isinstance(path[0], str)
    loc: Loc = ("body", *path[:3]) if in_batch else ("body", *path[:1]) if named else ("body",)
    name = str(loc[-1]) if len(loc) > 1 else "body"
    return problem(loc, f"{name}: nested too deeply")


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]
