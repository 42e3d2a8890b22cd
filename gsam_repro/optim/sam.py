"""SAM (Foret et al., 2021). The shared machinery lives in gsam_repro.optim.base (the two-pass
step), cheap_steps, reductions, distributed and stats; its names are re-exported here."""

from __future__ import annotations

from typing import Any

import torch

from gsam_repro.optim.base import (
    ADAPTIVE_MODES,
    PLAN_KEY,
    SHARPNESS_AWARE_OPTIONS,
    SharpnessAware,
)
from gsam_repro.optim.distributed import average_across_workers, batchnorm_buffers
from gsam_repro.optim.reductions import EPS, global_dot, global_dot_and_norm, global_norm
from gsam_repro.optim.stats import STAT_NAMES

__all__ = [
    "ADAPTIVE_MODES",
    "EPS",
    "PLAN_KEY",
    "SAM",
    "SHARPNESS_AWARE_OPTIONS",
    "STAT_NAMES",
    "SharpnessAware",
    "average_across_workers",
    "batchnorm_buffers",
    "global_dot",
    "global_dot_and_norm",
    "global_norm",
]


class SAM(SharpnessAware):
    """Sharpness-aware minimization (Foret et al., 2021): d = g_p = grad f(w + eps).

    `rho` is the perturbation radius; give `rho_min` (with lr_max/lr_min) for a radius that
    follows the learning rate as GSAM's does."""

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer] | torch.optim.Optimizer = torch.optim.SGD,
        *,
        rho: float = 0.05,
        **kwargs: Any,
    ):
        super().__init__(params, base_optimizer, rho_max=rho, rho_name="rho", **kwargs)
