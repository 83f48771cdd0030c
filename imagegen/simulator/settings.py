"""Simulator settings and the task-duration distribution."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

DEFAULT_DURATION = "lognormal:3:0.3"

DurationKind = Literal["fixed", "lognormal", "uniform"]


@dataclass(frozen=True)
class DurationSpec:
    """How long a task takes: ``fixed`` (a), ``lognormal`` (median a, sigma b), ``uniform`` (a..b)."""

    kind: DurationKind
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, text: str | float) -> DurationSpec:
        """Parse ``"0.5"``, ``"fixed:0.5"``, ``"lognormal:3:0.3"`` or ``"uniform:2:10"``."""
        if isinstance(text, int | float):
            return cls._checked("fixed", float(text), 0.0)
        parts = [p.strip() for p in text.strip().split(":")]
        try:
            if len(parts) == 1:
                return cls._checked("fixed", float(parts[0]), 0.0)
            if parts[0] == "fixed" and len(parts) == 2:
                return cls._checked("fixed", float(parts[1]), 0.0)
            if parts[0] in ("lognormal", "uniform") and len(parts) == 3:
                kind: DurationKind = "lognormal" if parts[0] == "lognormal" else "uniform"
                return cls._checked(kind, float(parts[1]), float(parts[2]))
        except ValueError:
            pass
        raise ValueError(f"bad duration spec {text!r}: use N, fixed:N, lognormal:MEDIAN:SIGMA or uniform:LO:HI")

    @classmethod
    def _checked(cls, kind: DurationKind, a: float, b: float) -> DurationSpec:
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0:
            raise ValueError("duration parameters must be finite and non-negative")
        if kind == "lognormal" and a == 0:
            raise ValueError("lognormal median must be > 0")
        if kind == "uniform" and b < a:
            raise ValueError("uniform needs LO <= HI")
        return cls(kind, a, b)

    def sample(self, rng: random.Random) -> float:
        """Draw one duration in seconds."""
        if self.kind == "lognormal":
            return rng.lognormvariate(math.log(self.a), self.b)
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return self.a


@dataclass(frozen=True)
class SimSettings:
    """Process-level settings. Build from the environment with :meth:`from_env`."""

    duration_s: str | float = DEFAULT_DURATION
    webhook_secret: str = ""
    webhook_retry_base_s: float = 1.0

    def __post_init__(self) -> None:
        # Fail at construction, not on the first submit.
        DurationSpec.parse(self.duration_s)
        if self.webhook_retry_base_s < 0:
            raise ValueError("webhook_retry_base_s must be >= 0")

    @property
    def duration(self) -> DurationSpec:
        """The parsed default duration distribution."""
        return DurationSpec.parse(self.duration_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimSettings:
        """Read ``SIM_DURATION_S``, ``APIDOT_WEBHOOK_SECRET`` and ``SIM_WEBHOOK_RETRY_BASE_S``."""
        env = os.environ if environ is None else environ
        return cls(
            duration_s=env.get("SIM_DURATION_S") or DEFAULT_DURATION,
            webhook_secret=env.get("APIDOT_WEBHOOK_SECRET", ""),
            webhook_retry_base_s=float(env.get("SIM_WEBHOOK_RETRY_BASE_S") or 1.0),
        )
