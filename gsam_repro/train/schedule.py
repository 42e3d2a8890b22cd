"""The learning-rate schedule: linear warmup, then linear or cosine decay to lr_min.

Attached to the optimizer as a torch LambdaLR, stepped once per optimizer step; the SAM family
shares param_groups with its base optimizer, so rho_t follows the same learning rate.
"""

from __future__ import annotations

import math

import torch


class WarmupDecay:
    """lr_t / lr_max at step t: ramps linearly from 1/warmup to 1 over `warmup` steps, then
    decays (linear, cosine or not at all) to lr_min / lr_max at `total` steps.

    A plain class rather than a lambda, so LambdaLR can store it in its state_dict."""

    def __init__(self, total: int, warmup: int, decay: str, lr_max: float, lr_min: float):
        self.total = total
        self.warmup = warmup
        self.decay = decay
        self.floor = lr_min / lr_max

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.decay == "constant":
            return 1.0
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        if self.decay == "linear":
            shape = 1.0 - progress
        else:  # cosine
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.floor + (1.0 - self.floor) * shape


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                   decay: str, lr_max: float, lr_min: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR with the WarmupDecay shape (optimizer lr must be lr_max)."""
    shape = WarmupDecay(total_steps, warmup_steps, decay, lr_max, lr_min)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, shape)
