"""GSAM (Zhuang et al., ICLR 2022): SAM's direction minus alpha times the part of g orthogonal
to g_p, which lowers the surrogate gap h = f(w + eps) - f(w) without undoing SAM's descent."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gsam_repro.optim.base import SharpnessAware
from gsam_repro.optim.reductions import EPS


class GSAM(SharpnessAware):
    """d = g_p - alpha * g_perp, with g_perp = g - (<g, g_p> / ||g_p||^2) g_p.

    rho follows the learning rate from rho_max (at lr_max) to rho_min (at lr_min), as in the
    paper; alpha = 0 with rho_max == rho_min is SAM exactly. Other arguments: `SharpnessAware`."""

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer] | torch.optim.Optimizer = torch.optim.SGD,
        *,
        rho_max: float = 0.04,
        rho_min: float | None = None,
        alpha: float = 0.01,
        **kwargs: Any,
    ):
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        super().__init__(params, base_optimizer, rho_max=rho_max, rho_min=rho_min, **kwargs)
        self.alpha = float(alpha)
        self._factor: tuple[Tensor, Tensor, Tensor] | None = None

    elementwise_direction = True

    def direction(
        self, grads_p: list[Tensor], grads: list[Tensor], dot: Tensor, grad_p_norm: Tensor
    ) -> None:
        """d = (1 + alpha c) g_p - alpha g with c = <g, g_p> / (||g_p||^2 + eps)."""
        if self.alpha == 0:
            return
        memo = self._factor
        if memo is None or memo[0] is not dot or memo[1] is not grad_p_norm:
            # called once per block with the same scalars: compute the factor once a step
            factor = 1 + self.alpha * (dot / (grad_p_norm * grad_p_norm + EPS))
            memo = self._factor = (dot, grad_p_norm, factor)
        torch._foreach_mul_(grads_p, memo[2])
        torch._foreach_add_(grads_p, grads, alpha=-self.alpha)
