"""The steps of the cheap variants and of m-sharpness, as a mixin of `SharpnessAware`: LookSAM's
kept orthogonal component, one-pass steps (plain or LookSAM's reuse) and per-chunk steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gsam_repro.optim.chunks import Chunk
from gsam_repro.optim.reductions import EPS, global_dot_and_norm, global_norm


class CheapSteps:
    """Steps other than one full two-pass step; mixed into `SharpnessAware`, whose methods
    (`_direction_at_w`, `_apply`, `_set_stats`, `first_step`, ...) they call."""

    def _keep_orthogonal(
        self, params: list[Tensor], grads: list[Tensor], grads_p: list[Tensor], dot: Tensor,
        grad_norm: Tensor, rho: float | Tensor,
    ) -> None:
        """LookSAM's one extra buffer: g_v = g_p - (<g, g_p> / ||g||^2) g, the part of g_p
        orthogonal to g, kept until the next full step."""
        keep = [self._buffer(p, "v") for p in params]
        if not isinstance(rho, Tensor) and rho == 0:
            torch._foreach_zero_(keep)  # no perturbation: g_p == g, and g_v is rounding only
            return
        torch._foreach_copy_(keep, grads_p)
        coefficient = -dot / (grad_norm * grad_norm + EPS)
        torch._foreach_addcmul_(keep, grads, [coefficient] * len(keep))

    def _chunked_step(
        self, closure: Callable[[Chunk], Any], grad_scaler: torch.amp.GradScaler | None
    ) -> Any:
        """m-sharpness: the method's two passes and direction per chunk of m examples, the
        directions averaged (weighted by chunk size) into one more buffer, then one base step.
        Returns the mean loss at w; stats are the chunks' weighted means."""
        params = [p for group in self.param_groups for p in group["params"] if p.requires_grad]
        total = [self._buffer(p, "m") for p in params]
        torch._foreach_zero_(total)
        touched: set[int] = set()
        loss_sum: Any = 0.0
        sums: dict[str, Tensor] = {}
        batch_size, index = None, 0
        while True:
            chunk = Chunk(index, self.m, batch_size)
            with self._maybe_no_sync():
                self.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    loss = closure(chunk)
                batch_size = chunk.batch_size
                weight = chunk.size / chunk.batch_size
                self.first_step(loss, grad_scaler=grad_scaler)
                if self._pending["skip"]:  # overflow under a GradScaler: the scaler skips,
                    while not chunk.last:  # after the pass at w is whole (its logits are read)
                        chunk = Chunk(chunk.index + 1, self.m, batch_size)
                        self.zero_grad(set_to_none=True)
                        with torch.enable_grad():
                            closure(chunk)
                    self.second_step(None, grad_scaler=grad_scaler)
                    return loss
                with torch.enable_grad():
                    loss_p = closure(Chunk(index, self.m, batch_size, at_w=False))
            pending, self._pending = self._pending, None
            with torch.no_grad():
                chunk_params, directions = self._direction_at_w(pending, loss_p, grad_scaler)
                torch._foreach_add_([self.state[p]["m"] for p in chunk_params], directions,
                                    alpha=weight)
            touched.update(id(p) for p in chunk_params)
            loss_sum = loss_sum + weight * (loss.detach() if isinstance(loss, Tensor) else loss)
            for key, value in self.stats.items():
                sums[key] = sums[key] + weight * value if key in sums else weight * value
            if chunk.last:
                break
            index += 1
        used = [p for p in params if id(p) in touched]
        for p in used:
            p.grad = self.state[p]["m"]
        with torch.no_grad():
            self._apply(used, [p.grad for p in used], grad_scaler)
        self.stats = sums
        return loss_sum

    def _single_pass_step(
        self, closure: Callable[[], Any], grad_scaler: torch.amp.GradScaler | None, reuse: bool
    ) -> Any:
        """One pass at w. Plain: the base optimizer steps on g. LookSAM's reuse step: the
        method's direction with g_p estimated as g + alpha (||g|| / ||g_v||) g_v. Stats report
        no perturbation: rho = 0, f_p = f, h = 0."""
        with self._maybe_no_sync():
            self.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = closure()  # the whole batch, also when m is set
        with torch.no_grad():
            params = [p for group in self.param_groups for p in group["params"]
                      if p.grad is not None]
            if not params:
                raise RuntimeError("step: no parameter has a gradient; did backward() run?")
            grads = [p.grad for p in params]
            grad_norm = global_norm(grads)
            kept = [self.state[p].get("v") for p in params]
            if reuse and all(v is not None for v in kept):
                scale = self.plan.looksam_alpha * grad_norm / (global_norm(kept) + EPS)
                estimate = torch._foreach_mul(kept, scale)
                torch._foreach_add_(estimate, grads)
                for p, value in zip(params, estimate, strict=True):
                    p.grad = value
                dot, estimate_norm = global_dot_and_norm(grads, estimate)
                self.direction(estimate, grads, dot, estimate_norm)
                self._apply(params, estimate, grad_scaler)
            else:
                dot, estimate_norm = grad_norm * grad_norm, grad_norm
                self._apply(params, grads, grad_scaler)
            self._set_stats(loss, loss, 0.0, grad_norm, estimate_norm, dot, grad_scaler)
        return loss
