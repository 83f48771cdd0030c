"""A hand-driven clock for the code that takes ``clock=`` (the simulator, the duration learner)."""

from __future__ import annotations


class FakeClock:
    """Returns ``t`` when called; a test sets or advances it (``now`` is the same value)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    @property
    def now(self) -> float:
        return self.t

    @now.setter
    def now(self, value: float) -> None:
        self.t = value

    def advance(self, seconds: float) -> float:
        """Move the clock on; returns the new time."""
        self.t += seconds
        return self.t
