"""``Prefer: wait`` parsing, the events wire format, and announcement payloads: pure functions."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from imagegen.api.events import sse
from imagegen.api.waiting import MAX_WAIT_S, preferred_wait
from imagegen.store.changes import parse


def test_wait_is_read_among_other_preferences() -> None:
    assert preferred_wait("wait=10") == 10
    assert preferred_wait("respond-async, wait=5") == 5
    assert preferred_wait("WAIT = 7 ; foo=bar") == 7
    assert preferred_wait('wait="3"') == 3
    assert preferred_wait("wait=0") == 0


def test_a_long_wait_is_applied_as_the_longest_honoured() -> None:
    assert preferred_wait("wait=3600") == MAX_WAIT_S


def test_no_or_a_malformed_wait_asks_none() -> None:
    malformed = ("wait", "wait=", "wait=-1", "wait=1.5", "wait=abc", 'wait="5', "wait=\u0661\u0662")
    for header in (None, "", "respond-async", "handling=strict", *malformed):
        assert preferred_wait(header) is None, header


@given(st.text(max_size=200))
def test_any_header_parses_to_none_or_a_bounded_wait(header: str) -> None:
    wait = preferred_wait(header)
    assert wait is None or 0 <= wait <= MAX_WAIT_S


def test_an_event_is_one_data_line() -> None:
    frame = sse("status", {"prompt": "two\nlines", "n": 1}, 3).decode()
    assert frame.endswith("\n\n")
    lines = frame.rstrip("\n").split("\n")
    assert lines[:2] == ["id: 3", "event: status"]
    assert len(lines) == 3 and json.loads(lines[2].removeprefix("data: ")) == {"prompt": "two\nlines", "n": 1}


@given(st.binary(max_size=300))
def test_any_announcement_parses_to_words_without_spaces(raw: bytes) -> None:
    assert all(word and " " not in word for word in parse(raw))
