"""The perturbation radius schedule: rho follows the learning rate (docs/optimizers.md, "The math").

rho_t = rho_min + (rho_max - rho_min) * (lr_t - lr_min) / (lr_max - lr_min), clamped at 0, and
rho_max whenever lr_max == lr_min. Reading lr_t from the optimizer at every step means any torch
LR scheduler drives rho too, with nothing extra to step.
"""

from __future__ import annotations

import torch

from gsam_repro.optim.rules import check_rho_range


def check_rho_schedule(
    rho_max: float, rho_min: float, lr_max: float, lr_min: float, *, rho_name: str = "rho_max"
) -> None:
    """Raise ValueError naming the first bad argument of a rho schedule."""
    check_rho_range(rho_max, rho_min, rho_name)
    if lr_min < 0:
        raise ValueError(f"lr_min must be >= 0, got {lr_min}")
    if lr_max < lr_min:
        raise ValueError(f"lr_max ({lr_max}) must not be smaller than lr_min ({lr_min})")


def rho_at(
    lr: float | torch.Tensor, *, rho_max: float, rho_min: float, lr_max: float, lr_min: float
) -> float | torch.Tensor:
    """rho_t for the current learning rate `lr` (a float, or a tensor for tensor learning rates).

    Linear in lr between (lr_min, rho_min) and (lr_max, rho_max); constant rho_max when
    lr_max == lr_min; never below 0 (warmup can push lr under lr_min)."""
    if lr_max == lr_min:
        return rho_max
    rho = rho_min + (rho_max - rho_min) * (lr - lr_min) / (lr_max - lr_min)
    if isinstance(rho, torch.Tensor):
        return rho.clamp(min=0.0)
    return max(0.0, rho)
