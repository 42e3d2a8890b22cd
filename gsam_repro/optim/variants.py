"""Which kind of step a sharpness-aware optimizer takes, step by step, and what that costs.

The cheap baselines a new sharpness-aware method must beat all run the method on some steps only:

- `every` k: the method every k-th step, plain base-optimizer steps on g between (Composer's
  `interval`);
- `looksam` k: the method every k-th step, and between them one pass that reuses the stored part
  of g_p orthogonal to g (LookSAM, Liu et al. 2022);
- `switch_prob` p: each step is the method with probability p, plain otherwise (RST, Zhao et al.
  2022), drawn from a seeded generator kept in the optimizer's state dict;
- `start_fraction` s: plain steps for the first round(s * total_steps) steps, then the method
  (late-phase SAM, Zhou et al. 2025); combines with any one of the three above.

`StepPlan` decides the kind of each step and knows the exact number of forward+backward passes a
run spends, so cost tables and compute-matched comparisons stay right.
"""

from __future__ import annotations

import math
from typing import Any

import torch

FULL = "full"  # two passes: the method's own step
PLAIN = "plain"  # one pass: the base optimizer steps on g
REUSE = "reuse"  # one pass: LookSAM's step with the stored orthogonal part of g_p

# The options, as create_optimizer and run configs name them; `total_steps` is a fact of the run.
VARIANT_OPTIONS = (
    "every", "looksam", "looksam_alpha", "switch_prob", "switch_seed", "start_fraction",
)
LOOKSAM_ALPHA = 0.7  # the LookSAM paper's setting


def _positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _fraction(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


class StepPlan:
    """The kind of every step (FULL, PLAIN or REUSE) under the options above; none given is the
    method at every step. `total_steps` (the run's length) is needed by `start_fraction` and
    makes `passes_per_step` the exact average over that run."""

    def __init__(
        self,
        *,
        every: int | None = None,
        looksam: int | None = None,
        looksam_alpha: float | None = None,
        switch_prob: float | None = None,
        switch_seed: int | None = None,
        start_fraction: float | None = None,
        total_steps: int | None = None,
    ):
        self.every = _positive_int("every", every)
        self.looksam = _positive_int("looksam", looksam)
        self.switch_prob = _fraction("switch_prob", switch_prob)
        self.start_fraction = _fraction("start_fraction", start_fraction)
        self.total_steps = _positive_int("total_steps", total_steps)
        given = [name for name in ("every", "looksam", "switch_prob")
                 if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"{given[1]}: choose one of every, looksam and switch_prob "
                             f"(also given: {given[0]})")
        if looksam_alpha is not None and self.looksam is None:
            raise ValueError("looksam_alpha applies only together with looksam")
        if looksam_alpha is not None and not float(looksam_alpha) >= 0:
            raise ValueError(f"looksam_alpha must be >= 0, got {looksam_alpha!r}")
        self.looksam_alpha = LOOKSAM_ALPHA if looksam_alpha is None else float(looksam_alpha)
        if switch_seed is not None and self.switch_prob is None:
            raise ValueError("switch_seed applies only together with switch_prob")
        if switch_seed is not None and (isinstance(switch_seed, bool)
                                        or not isinstance(switch_seed, int)):
            raise ValueError(f"switch_seed must be an integer, got {switch_seed!r}")
        if self.start_fraction is not None and self.total_steps is None:
            raise ValueError("start_fraction needs total_steps (the run's length; the trainer "
                             "passes it)")
        self.switch_seed = 0 if switch_seed is None else switch_seed
        self.generator = torch.Generator().manual_seed(self.switch_seed)
        self.steps = 0  # steps taken so far

    @property
    def active(self) -> bool:
        """Whether any option makes some steps differ from the method's own."""
        return any(v is not None for v in (self.every, self.looksam, self.switch_prob,
                                           self.start_fraction))

    @property
    def start(self) -> int:
        """The first step (0-based) that may be the method's own."""
        if self.start_fraction is None:
            return 0
        return round(self.start_fraction * self.total_steps)

    def next_kind(self) -> str:
        """The kind of the next step; advances the step counter (and the generator)."""
        step = self.steps
        self.steps += 1
        if step < self.start:
            return PLAIN
        if self.switch_prob is not None:
            draw = torch.rand((), generator=self.generator, dtype=torch.float64)
            return FULL if float(draw) < self.switch_prob else PLAIN
        period = self.every or self.looksam
        if period is None or (step - self.start) % period == 0:
            return FULL
        return REUSE if self.looksam is not None else PLAIN

    def passes_per_step(self) -> float:
        """Forward+backward passes per step: the exact average over a run of `total_steps`
        (for switch_prob its expectation), or the long-run average without it."""
        rate = 1.0  # expected FULL steps per step once the method runs
        if self.switch_prob is not None:
            rate = self.switch_prob
        period = self.every or self.looksam
        if self.total_steps is None:
            return 1.0 + (rate if period is None else 1.0 / period)
        method_steps = max(self.total_steps - self.start, 0)
        full = rate * method_steps if period is None else math.ceil(method_steps / period)
        return 1.0 + full / self.total_steps

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.generator.set_state(state["generator"])
