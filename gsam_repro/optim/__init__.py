"""Sharpness-aware optimizers (SAM, GSAM, f_p + lambda*h) usable with any torch loop.

    from gsam_repro.optim import create_optimizer
    opt = create_optimizer("gsam", model.parameters(), lr=0.1, momentum=0.9, rho_max=0.04,
                           rho_min=0.02, alpha=0.01, lr_min=0.001, model=model)
    loss = opt.step(closure)      # closure: forward + backward, returns the loss

See docs/optimizers.md for the math, BatchNorm, DDP, mixed precision and adding your own.

The names below are imported on first use, so that the torch-free rules in
`gsam_repro.optim.rules` (which run configs are checked against) can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "scaled_step": "amp",
    "optimizer_facts": "facts",
    "GSAM": "gsam",
    "available_optimizers": "registry",
    "create_optimizer": "registry",
    "register_optimizer": "registry",
    "resolve_optimizer": "registry",
    "rho_at": "rho",
    "SAM": "sam",
    "STAT_NAMES": "sam",
    "SharpnessAware": "sam",
    "WeightedSAM": "weighted",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
