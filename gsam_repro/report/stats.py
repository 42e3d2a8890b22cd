"""Two-sample statistics over seeds, shared by every table that compares two columns.

Welch's t (unequal variances) with the Welch–Satterthwaite degrees of freedom: seeds of two
optimizers need not have equal spread. No test is made with fewer than MIN_SEEDS_FOR_TEST values
on a side: two seeds give a standard deviation with one degree of freedom, too little to trust.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SIGNIFICANCE = 0.05
CONFIDENCE = 1.0 - SIGNIFICANCE
MIN_SEEDS_FOR_TEST = 3


@dataclass(frozen=True)
class Welch:
    """Difference of means a − b, its 95 % interval, Welch's two-sided p and the sample sizes.
    `low`, `high`, `p` and `dof` are None when no test is possible (n < 3 or no spread)."""

    diff: float | None
    low: float | None
    high: float | None
    p: float | None
    dof: float | None
    n_a: int
    n_b: int

    @property
    def tested(self) -> bool:
        return self.p is not None


def finite(values: Iterable[float]) -> np.ndarray:
    """The finite values as float64 (None and NaN dropped)."""
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)


def welch(a: Iterable[float], b: Iterable[float], confidence: float = CONFIDENCE) -> Welch:
    """Welch's t-test and the Welch–Satterthwaite interval for mean(a) − mean(b)."""
    from scipy import stats

    a, b = finite(a), finite(b)
    diff = float(a.mean() - b.mean()) if a.size and b.size else None
    untested = Welch(diff, None, None, None, None, int(a.size), int(b.size))
    if a.size < MIN_SEEDS_FOR_TEST or b.size < MIN_SEEDS_FOR_TEST:
        return untested
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:  # no spread on either side: t is undefined
        return untested
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    t = diff / se
    p = float(2.0 * stats.t.sf(abs(t), dof))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, dof)) * se
    return Welch(diff, diff - half, diff + half, p, float(dof), int(a.size), int(b.size))


def welch_p(a: Iterable[float], b: Iterable[float]) -> float | None:
    """Welch's two-sided p-value, or None when no test is possible."""
    return welch(a, b).p
