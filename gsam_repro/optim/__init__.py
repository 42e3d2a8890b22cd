"""Sharpness-aware optimizers (SAM, GSAM, f_p + lambda*h) usable with any torch loop.

    from gsam_repro.optim import create_optimizer
    opt = create_optimizer("gsam", model.parameters(), lr=0.1, momentum=0.9, rho_max=0.04,
                           rho_min=0.02, alpha=0.01, lr_min=0.001, model=model)
    loss = opt.step(closure)      # closure: forward + backward, returns the loss

See docs/optimizers.md for the math, BatchNorm, DDP, mixed precision and adding your own.
"""

from gsam_repro.optim.amp import scaled_step
from gsam_repro.optim.facts import optimizer_facts
from gsam_repro.optim.gsam import GSAM
from gsam_repro.optim.registry import (
    available_optimizers,
    create_optimizer,
    register_optimizer,
    resolve_optimizer,
)
from gsam_repro.optim.rho import rho_at
from gsam_repro.optim.sam import SAM, STAT_NAMES, SharpnessAware
from gsam_repro.optim.weighted import WeightedSAM

__all__ = [
    "GSAM",
    "SAM",
    "STAT_NAMES",
    "SharpnessAware",
    "WeightedSAM",
    "available_optimizers",
    "create_optimizer",
    "optimizer_facts",
    "register_optimizer",
    "resolve_optimizer",
    "rho_at",
    "scaled_step",
]
