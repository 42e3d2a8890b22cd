"""What a run records about its optimizer, read from the optimizer object itself (never guessed
from its name or config keys): its family, passes per step and the radius it perturbs with.

`radius` is one name for every sharpness-aware method's radius (SAM's and the weighted
baseline's `rho`, GSAM's `rho_max`, a user's subclass whatever it calls it): the value at the
schedule's start. `rho_start`/`rho_end` are rho_t at lr_max and lr_min.
"""

from __future__ import annotations

from typing import Any

import torch

from gsam_repro.optim.base import SharpnessAware
from gsam_repro.optim.rho import rho_at

PLAIN = "plain"
SHARPNESS_AWARE = "sharpness_aware"
FAMILIES = (PLAIN, SHARPNESS_AWARE)


def optimizer_facts(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """{optimizer_family, passes_per_step, radius, rho_start, rho_end} for a run's records."""
    passes = float(getattr(optimizer, "passes_per_step", 1))
    if not isinstance(optimizer, SharpnessAware):
        return {"optimizer_family": SHARPNESS_AWARE if passes > 1 else PLAIN,
                "passes_per_step": passes, "radius": None, "rho_start": None, "rho_end": None}
    schedule = dict(rho_max=optimizer.rho_max, rho_min=optimizer.rho_min,
                    lr_max=optimizer.lr_max, lr_min=optimizer.lr_min)
    return {
        "optimizer_family": SHARPNESS_AWARE,
        "passes_per_step": passes,
        "radius": optimizer.rho_max,
        "rho_start": float(rho_at(optimizer.lr_max, **schedule)),
        "rho_end": float(rho_at(optimizer.lr_min, **schedule)),
    }
