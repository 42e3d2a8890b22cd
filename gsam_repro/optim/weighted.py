"""The weighted-loss baseline of the GSAM paper: minimize f_p + lam * h = (1 + lam) f_p - lam f.

Its gradient (with g_p taken as the gradient of f_p, as SAM does) is (1 + lam) g_p - lam g. It
penalizes the surrogate gap h directly, where GSAM only removes g's component orthogonal to g_p;
the paper shows this baseline trades off f_p against h and does worse than GSAM."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gsam_repro.optim.base import SharpnessAware


class WeightedSAM(SharpnessAware):
    """d = (1 + lam) g_p - lam g: the gradient of f_p + lam * h. lam = 0 is SAM exactly.

    `rho` is the perturbation radius (constant unless rho_min, lr_max, lr_min say otherwise).
    Other arguments: `SharpnessAware`."""

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer] | torch.optim.Optimizer = torch.optim.SGD,
        *,
        rho: float = 0.05,
        lam: float = 0.1,
        **kwargs: Any,
    ):
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        super().__init__(params, base_optimizer, rho_max=rho, rho_name="rho", **kwargs)
        self.lam = float(lam)

    elementwise_direction = True

    def direction(
        self, grads_p: list[Tensor], grads: list[Tensor], dot: Tensor, grad_p_norm: Tensor
    ) -> None:
        """lerp(g_p, g, -lam) = (1 + lam) g_p - lam g, in one pass."""
        if self.lam == 0:
            return
        torch._foreach_lerp_(grads_p, grads, -self.lam)
