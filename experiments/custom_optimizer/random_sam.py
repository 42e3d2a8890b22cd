"""RandomSAM: SAM with the perturbation along a random direction instead of the gradient.

A sanity baseline for the SAM family. It costs exactly what SAM costs (two forward+backward
passes a step) and updates with the gradient at a perturbed point, like SAM, but the point
w + eps is chosen at random on the sphere of radius rho, not uphill. In the many dimensions of
a network a random direction barely changes the loss (its surrogate gap f(w + eps) - f(w) is
about zero), so RandomSAM should end about as sharp as SGD, at twice the cost; where it matched
SAM's flatness or accuracy, SAM's effect would be that of noise, not of seeking flat regions.

Used from a run config or sweep spec by file path, relative to the directory the command runs
in (the repository root here):

    optimizer: {name: experiments/custom_optimizer/random_sam.py:RandomSAM, base: sgd,
                lr: 0.05, momentum: 0.9, rho: 0.1}

How it is built: `SharpnessAware.first_step` keeps the gradient found in `p.grad` as g and moves
w to w + rho * g / ||g||. Replacing `p.grad` with Gaussian noise u just before that makes the
step w + rho * u / ||u|| (a uniformly random direction), and the rest of the machinery - undoing
the perturbation, BatchNorm statistics, the base optimizer, DDP and GradScaler handling - works
unchanged. The direction is the default d = g_p, as in SAM. One consequence: the optimizer's
`grad_norm` statistic reports ||u|| rather than ||g||.
"""

from __future__ import annotations

from typing import Any

import torch

from gsam_repro.optim import SharpnessAware


class RandomSAM(SharpnessAware):
    """SAM's update at a random point of the rho-sphere around w (constant rho)."""

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        rho: float = 0.05,
        **kwargs: Any,
    ):
        super().__init__(params, base_optimizer, rho_max=rho, rho_name="rho", **kwargs)

    # For `gsam-repro check`: eps is not along g, so h = f(w + eps) - f(w) is not
    # rho ||g|| + rho^2 g^T H g / (2 ||g||^2); the check reports that property as n.a.
    gradient_perturbation = False

    @torch.no_grad()
    def first_step(self, loss: Any = None, grad_scaler: torch.amp.GradScaler | None = None) -> None:
        """Swap each gradient for Gaussian noise, then perturb along it as SAM would along g.

        Under a GradScaler a non-finite g is left in place, so that the step is skipped as for
        SAM (`gsam-repro check` found the first version hiding it behind the noise)."""
        grads = [p.grad for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        if grad_scaler is not None and grad_scaler.is_enabled():
            if not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
                super().first_step(loss, grad_scaler=grad_scaler)
                return
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = torch.randn_like(p.grad)
        super().first_step(loss, grad_scaler=grad_scaler)
