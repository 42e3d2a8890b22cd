"""The per-step statistics a sharpness-aware optimizer reports in `opt.stats`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

STAT_NAMES = ("f", "f_p", "h", "rho", "grad_norm", "grad_p_norm", "cos")


def as_stat(value: Any, like: Tensor) -> Tensor:
    """A detached 0-dim tensor for `opt.stats`, on `like`'s device (nan for a missing loss)."""
    if value is None:
        return torch.full((), float("nan"), dtype=like.dtype, device=like.device)
    if isinstance(value, Tensor):
        stat = value.detach().reshape(())
        return stat.float() if stat.dtype in (torch.float16, torch.bfloat16) else stat
    return torch.full((), float(value), dtype=like.dtype, device=like.device)
