"""The lifecycle table against the documented lifecycle (pure parts only; the CAS statements are tested elsewhere)."""

from __future__ import annotations

import itertools

import pytest

from imagegen.errors import ImagegenError, InvalidTransition
from imagegen.store.transitions import ACTIVE, RETRYABLE_FROM, TERMINAL, TRANSITIONS, JobStatus, can_transition, check

S = JobStatus

SPEC_STATUSES = {
    "queued",
    "submitting",
    "running",
    "finalizing",
    "held",
    "succeeded",
    "failed",
    "expired",
    "canceled",
}
SPEC_TERMINAL = {S.SUCCEEDED, S.FAILED, S.CANCELED, S.EXPIRED}
SPEC_NON_TERMINAL = {S.QUEUED, S.SUBMITTING, S.RUNNING, S.FINALIZING, S.HELD}

#: Every edge of the documented lifecycle, spelled out.
SPEC_EDGES: set[tuple[JobStatus, JobStatus]] = {
    (S.QUEUED, S.SUBMITTING),
    (S.SUBMITTING, S.RUNNING),
    (S.SUBMITTING, S.SUCCEEDED),
    (S.SUBMITTING, S.FAILED),
    (S.SUBMITTING, S.QUEUED),
    (S.SUBMITTING, S.HELD),
    (S.RUNNING, S.HELD),
    (S.HELD, S.QUEUED),
    (S.RUNNING, S.FINALIZING),
    (S.FINALIZING, S.SUCCEEDED),
    (S.FINALIZING, S.FAILED),
    (S.RUNNING, S.FAILED),
    *((s, S.EXPIRED) for s in SPEC_NON_TERMINAL),
    *((s, S.CANCELED) for s in SPEC_NON_TERMINAL),
    (S.FAILED, S.QUEUED),
    (S.EXPIRED, S.QUEUED),
    (S.CANCELED, S.QUEUED),
}

#: The two edges the module documents beyond that lifecycle (held on a poll → running; dead finalizer → running).
DOCUMENTED_EXTRA_EDGES = {(S.HELD, S.RUNNING), (S.FINALIZING, S.RUNNING)}

CODE_EDGES = {(src, dst) for src, targets in TRANSITIONS.items() for dst in targets}
ALL_PAIRS = list(itertools.product(JobStatus, JobStatus))


def test_statuses_are_the_spec_strings() -> None:
    assert {s.value for s in JobStatus} == SPEC_STATUSES
    assert S.QUEUED == "queued"


def test_terminal_and_active_sets() -> None:
    assert TERMINAL == SPEC_TERMINAL
    assert ACTIVE == SPEC_NON_TERMINAL
    assert {S.FAILED, S.EXPIRED, S.CANCELED} == RETRYABLE_FROM


def test_table_has_a_row_for_every_status() -> None:
    assert set(TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize(("source", "target"), sorted(SPEC_EDGES), ids=lambda s: s.value)
def test_every_spec_edge_is_allowed(source: JobStatus, target: JobStatus) -> None:
    assert can_transition(source, target)
    check([source], target)  # does not raise


def test_no_edges_beyond_the_spec_except_the_documented_ones() -> None:
    assert CODE_EDGES - SPEC_EDGES == DOCUMENTED_EXTRA_EDGES
    assert SPEC_EDGES <= CODE_EDGES


def test_no_self_loops() -> None:
    assert all(not can_transition(s, s) for s in JobStatus)


def test_succeeded_has_no_exits() -> None:
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()
    assert not any(can_transition(S.SUCCEEDED, t) for t in JobStatus)


@pytest.mark.parametrize("source", [S.FAILED, S.EXPIRED, S.CANCELED], ids=str)
def test_other_terminals_only_go_back_to_queued(source: JobStatus) -> None:
    assert TRANSITIONS[source] == {S.QUEUED}


@pytest.mark.parametrize("source", sorted(SPEC_NON_TERMINAL), ids=str)
def test_every_non_terminal_can_expire_and_be_canceled(source: JobStatus) -> None:
    assert can_transition(source, S.EXPIRED)
    assert can_transition(source, S.CANCELED)


@pytest.mark.parametrize("target", sorted(SPEC_TERMINAL), ids=str)
def test_terminal_states_never_reach_another_terminal(target: JobStatus) -> None:
    for source in TERMINAL:
        assert not can_transition(source, target)


def test_only_submitting_and_finalizing_reach_succeeded() -> None:
    assert {s for s in JobStatus if can_transition(s, S.SUCCEEDED)} == {S.SUBMITTING, S.FINALIZING}


def test_queued_is_reached_only_by_retry_resume_or_a_retryable_submit_error() -> None:
    assert {s for s in JobStatus if can_transition(s, S.QUEUED)} == {
        S.SUBMITTING,
        S.HELD,
        S.FAILED,
        S.EXPIRED,
        S.CANCELED,
    }


def test_queued_cannot_skip_the_submit_claim() -> None:
    assert TRANSITIONS[S.QUEUED] == {S.SUBMITTING, S.EXPIRED, S.CANCELED}


def test_running_cannot_go_straight_to_succeeded() -> None:
    # One claimant stores the result via finalizing: that is what makes results exactly-once.
    assert not can_transition(S.RUNNING, S.SUCCEEDED)


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_can_transition_agrees_with_check(source: JobStatus, target: JobStatus) -> None:
    allowed = (source, target) in CODE_EDGES
    assert can_transition(source, target) is allowed
    if allowed:
        check([source], target)
    else:
        with pytest.raises(InvalidTransition):
            check([source], target)


def test_check_names_every_bad_source() -> None:
    with pytest.raises(InvalidTransition) as info:
        check([S.QUEUED, S.SUCCEEDED, S.RUNNING, S.FAILED], S.SUCCEEDED)
    assert str(info.value) == "queued, succeeded, running, failed → succeeded is not a lifecycle edge"
    assert isinstance(info.value, ImagegenError)


def test_check_passes_when_every_source_is_allowed() -> None:
    check([S.QUEUED, S.SUBMITTING, S.RUNNING, S.FINALIZING, S.HELD], S.CANCELED)
    check([S.FAILED, S.EXPIRED, S.CANCELED, S.HELD, S.SUBMITTING], S.QUEUED)
    check([], S.SUCCEEDED)  # nothing to move: nothing wrong


def test_check_accepts_any_iterable_once() -> None:
    check(iter([S.RUNNING, S.HELD]), S.EXPIRED)
    with pytest.raises(InvalidTransition, match=r"^succeeded → expired"):
        check((s for s in [S.RUNNING, S.SUCCEEDED]), S.EXPIRED)
