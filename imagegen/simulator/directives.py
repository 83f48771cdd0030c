"""Prompt directives: ``[[token]]`` markers in a prompt that script the simulator's behaviour.

Parsing is pure (no state, no I/O) so it can be tested on its own and shared by every
simulated provider. Unknown tokens are kept in ``Directives.tokens`` (for the request
record) but otherwise ignored, like a real upstream would ignore them as prompt text.

A token may be scoped to one provider with a ``provider:`` prefix (``[[apidot:402]]``,
``[[openai:429x2]]``, ``[[image2:statusfail]]``): the other providers ignore it, so one
prompt can script a fallback path (APIDot pauses, OpenAI then serves the job).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

# Non-greedy so "[[a]] text [[b]]" yields two tokens.
_TOKEN_RE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)

#: HTTP statuses a directive (or the global config) may inject.
HTTP_FAULT_CODES: frozenset[int] = frozenset({400, 401, 402, 403, 404, 409, 429, 500, 502, 503, 504})

#: Prefixes that scope a token to one simulated provider.
PROVIDER_SCOPES: frozenset[str] = frozenset({"apidot", "openai", "image2"})

RetryAfterMode = Literal["default", "none", "seconds", "date", "pastdate"]
Outcome = Literal["finished", "statusfail", "safetyfail"]


@dataclass(frozen=True)
class Fault:
    """One injected failure and how many calls it covers.

    ``kind`` is an HTTP status as text ("429", "500", ...) or one of ``code500``,
    ``malformed``, ``moderation``, ``quota``. ``count`` None means every call.
    """

    kind: str
    count: int | None = None
    retry_after: RetryAfterMode = "default"
    retry_after_s: int = 1

    @property
    def http_status(self) -> int | None:
        """The HTTP status for plain status-code faults, else None."""
        return int(self.kind) if self.kind.isdigit() else None


@dataclass(frozen=True)
class AfterCreate:
    """A submit that creates the upstream task and then fails to say so: ``kind`` is ``stall`` (answer
    after ``seconds``), ``drop`` (connection closed mid-answer), ``502``/``504`` or ``noid`` (a 2xx
    without a task id). ``count`` None means every call."""

    kind: str
    count: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Directives:
    """Everything a prompt asks of the simulator (defaults = a normal, successful task)."""

    tokens: tuple[str, ...] = ()
    submit_faults: tuple[Fault, ...] = ()
    poll_faults: tuple[Fault, ...] = ()
    detail: bool = False
    hang_s: float = 0.0
    hang_count: int | None = None
    outcome: Outcome = "finished"
    duration_s: float | None = None
    never: bool = False
    shape_b: bool = False
    code0: bool = False
    processing: bool = False
    webhook_count: int = 1
    #: What happens to a submit after its task was created (stall, drop, 502/504, no task id).
    created_faults: tuple[AfterCreate, ...] = ()
    #: The word a terminal APIDot status reports instead of ``finished``/``failed``.
    status_label: str | None = None


class _Counted(Protocol):
    @property
    def count(self) -> int | None: ...


_F = TypeVar("_F", bound=_Counted)


def pick_fault(faults: Sequence[_F], call_index: int) -> _F | None:
    """Return the fault for the ``call_index``-th (0-based) call, or None once all are used up.

    Faults apply in the order written: ``[[429x2]] [[500x1]]`` gives 429, 429, 500, then success.
    A fault without ``xN`` covers every remaining call.
    """
    remaining = call_index
    for fault in faults:
        if fault.count is None or remaining < fault.count:
            return fault
        remaining -= fault.count
    return None


@dataclass
class _Builder:
    """Mutable twin of Directives, filled token by token (later tokens win)."""

    submit_faults: list[Fault] = field(default_factory=list)
    poll_faults: list[Fault] = field(default_factory=list)
    detail: bool = False
    hang_s: float = 0.0
    hang_count: int | None = None
    outcome: Outcome = "finished"
    duration_s: float | None = None
    never: bool = False
    shape_b: bool = False
    code0: bool = False
    processing: bool = False
    webhook_count: int = 1
    created_faults: list[AfterCreate] = field(default_factory=list)
    status_label: str | None = None


_COUNT = r"(?:x(?P<n>\d+))?"
_SECONDS = r"(?P<s>\d+(?:\.\d+)?)"
_RA_OPT = r"(?::(?P<opt>noheader|date|pastdate|ra=-?\d+))?"

_HTTP_FAULT_RE = re.compile(rf"(?P<poll>poll)?(?P<code>\d{{3}}){_COUNT}{_RA_OPT}")
_NAMED_FAULT_RE = re.compile(rf"(?P<name>code500|malformed|pollmalformed|moderation|quota){_COUNT}")
_HANG_RE = re.compile(rf"hang{_COUNT}:{_SECONDS}")
_SLOW_RE = re.compile(rf"slow:{_SECONDS}")
_DUP_RE = re.compile(r"dupwebhook:(?P<n>\d+)")


def _count(match: re.Match[str]) -> int | None:
    n = match.group("n")
    return int(n) if n is not None else None


def _http_fault(match: re.Match[str], b: _Builder) -> bool:
    code = int(match.group("code"))
    opt = match.group("opt")
    if code not in HTTP_FAULT_CODES or (opt is not None and code != 429):
        return False
    mode: RetryAfterMode = "default"
    seconds = 1
    if opt == "noheader":
        mode = "none"
    elif opt in ("date", "pastdate"):
        mode = "date" if opt == "date" else "pastdate"
    elif opt is not None:
        mode, seconds = "seconds", int(opt.removeprefix("ra="))
    fault = Fault(str(code), _count(match), mode, seconds)
    (b.poll_faults if match.group("poll") else b.submit_faults).append(fault)
    return True


def _named_fault(match: re.Match[str], b: _Builder) -> bool:
    name = match.group("name")
    if name == "pollmalformed":
        b.poll_faults.append(Fault("malformed", _count(match)))
    else:
        b.submit_faults.append(Fault(name, _count(match)))
    return True


def _hang(match: re.Match[str], b: _Builder) -> bool:
    b.hang_s, b.hang_count = float(match.group("s")), _count(match)
    return True


def _slow(match: re.Match[str], b: _Builder) -> bool:
    b.duration_s = float(match.group("s"))
    return True


def _dup(match: re.Match[str], b: _Builder) -> bool:
    b.webhook_count = int(match.group("n"))
    return True


_STALL_RE = re.compile(rf"submitstall{_COUNT}:{_SECONDS}")
_DROP_RE = re.compile(rf"submitdrop{_COUNT}")
_LOST_RE = re.compile(rf"submitlost{_COUNT}:(?P<what>502|504|noid)")
_LABEL_RE = re.compile(r"label:(?P<label>[a-z_]{1,32})")


def _stall(match: re.Match[str], b: _Builder) -> bool:
    b.created_faults.append(AfterCreate("stall", _count(match), float(match.group("s"))))
    return True


def _drop(match: re.Match[str], b: _Builder) -> bool:
    b.created_faults.append(AfterCreate("drop", _count(match)))
    return True


def _lost(match: re.Match[str], b: _Builder) -> bool:
    b.created_faults.append(AfterCreate(match.group("what"), _count(match)))
    return True


def _label(match: re.Match[str], b: _Builder) -> bool:
    b.status_label = match.group("label")
    return True


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], _Builder], bool]], ...] = (
    (_HTTP_FAULT_RE, _http_fault),
    (_NAMED_FAULT_RE, _named_fault),
    (_HANG_RE, _hang),
    (_SLOW_RE, _slow),
    (_DUP_RE, _dup),
    (_STALL_RE, _stall),
    (_DROP_RE, _drop),
    (_LOST_RE, _lost),
    (_LABEL_RE, _label),
)

# Bare words: builder attribute and the value they set.
_FLAGS: dict[str, tuple[str, object]] = {
    "detail": ("detail", True),
    "statusfail": ("outcome", "statusfail"),
    "safetyfail": ("outcome", "safetyfail"),
    "never": ("never", True),
    "instant": ("duration_s", 0.0),
    "shapeb": ("shape_b", True),
    "code0": ("code0", True),
    "processing": ("processing", True),
    "nowebhook": ("webhook_count", 0),
}


def extract_tokens(prompt: str) -> tuple[str, ...]:
    """All ``[[...]]`` tokens of a prompt, stripped, in order, as written."""
    return tuple(t.strip() for t in _TOKEN_RE.findall(prompt))


def _apply(token: str, b: _Builder, provider: str) -> bool:
    """Apply one token to the builder; False if it is not a known directive (or not for ``provider``)."""
    word = token.lower().replace(" ", "")
    scope, sep, rest = word.partition(":")
    if sep and scope in PROVIDER_SCOPES:
        if scope != provider:
            return False
        word = rest
    if word in _FLAGS:
        attr, value = _FLAGS[word]
        setattr(b, attr, value)
        return True
    for pattern, handler in _PATTERNS:
        match = pattern.fullmatch(word)
        if match is not None:
            return handler(match, b)
    return False


def parse_directives(prompt: str, provider: str = "apidot") -> Directives:
    """Parse every ``[[...]]`` directive in ``prompt`` as ``provider`` sees it.

    Case-insensitive; unknown tokens and tokens scoped to another provider are ignored.
    """
    tokens = extract_tokens(prompt)
    b = _Builder()
    for token in tokens:
        _apply(token, b, provider)
    return Directives(
        tokens=tokens,
        submit_faults=tuple(b.submit_faults),
        poll_faults=tuple(b.poll_faults),
        detail=b.detail,
        hang_s=b.hang_s,
        hang_count=b.hang_count,
        outcome=b.outcome,
        duration_s=b.duration_s,
        never=b.never,
        shape_b=b.shape_b,
        code0=b.code0,
        processing=b.processing,
        webhook_count=b.webhook_count,
        created_faults=tuple(b.created_faults),
        status_label=b.status_label,
    )
