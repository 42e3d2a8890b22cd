"""The official GSAM code's step, re-stated for `gsam-repro bench optim` as the reference to beat.

It does the arithmetic the paper's released PyTorch code does, organised as that code organises
it: Python loops over the parameters, the global norm as the norm of a stack of per-tensor norms
(each of a temporary: the tensor times a weight that is 1.0 without the adaptive mode),
ε stored per parameter (p.add_(ε) out, p.sub_(ε) back), g kept as a clone, and the decomposition
as a per-tensor sum for ⟨g, g_p⟩, two more global norms and a temporary `vertical` per tensor.
Two extra parameter-sized buffers (g and ε). It is timed beside `gsam_repro.optim.GSAM`, which
computes the same direction; tests/optim/test_optim_bench.py checks that they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

OFFICIAL_EPS = 1e-12


class OfficialStyleGSAM:
    """d = g_p - alpha (g - <g, g_p> / ||g_p||^2 g_p), then SGD steps; rho is constant."""

    passes_per_step = 2

    def __init__(self, params: list[Tensor], *, lr: float, rho: float, alpha: float,
                 **sgd_kwargs: Any):
        self.params = list(params)
        self.rho, self.alpha = float(rho), float(alpha)
        self.base_optimizer = torch.optim.SGD(self.params, lr=lr, **sgd_kwargs)
        self.state: dict[Tensor, dict[str, Tensor]] = {p: {} for p in self.params}

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def extra_buffers(self) -> list[Tensor]:
        return [t for s in self.state.values() for t in s.values() if t.dim() > 0]

    def _grad_norm(self, key: str | None = None) -> Tensor:
        # As the official code writes it: each tensor times a weight (|w| in its adaptive
        # mode, the number 1.0 otherwise, which still makes a temporary) before its norm.
        weight = 1.0
        tensors = [self.state[p][key] if key else p.grad for p in self.params
                   if p.grad is not None]
        return torch.norm(torch.stack([(weight * t).norm(p=2) for t in tensors]), p=2)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:
        self.zero_grad()
        with torch.enable_grad():
            loss = closure()
        # perturb: keep g, move to w + eps
        scale = self.rho / (self._grad_norm() + OFFICIAL_EPS)
        for p in self.params:
            if p.grad is None:
                continue
            self.state[p]["old_g"] = p.grad.clone()
            e_w = p.grad * scale.to(p)
            p.add_(e_w)
            self.state[p]["e_w"] = e_w
        self.zero_grad()
        with torch.enable_grad():
            closure()
        # decompose g against g_p, in p.grad
        inner = 0.0
        for p in self.params:
            if p.grad is not None:
                inner = inner + torch.sum(self.state[p]["old_g"] * p.grad)
        new_norm = self._grad_norm()
        old_norm = self._grad_norm("old_g")
        cosine = inner / (new_norm * old_norm + OFFICIAL_EPS)
        for p in self.params:
            if p.grad is None:
                continue
            vertical = self.state[p]["old_g"] - cosine * old_norm * p.grad / (
                new_norm + OFFICIAL_EPS)
            p.grad.add_(vertical, alpha=-self.alpha)
        # back to w, then the base step
        for p in self.params:
            if "e_w" in self.state[p]:
                p.sub_(self.state[p]["e_w"])
        self.base_optimizer.step()
        return loss
