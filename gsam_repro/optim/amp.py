"""Mixed precision with a GradScaler, for any optimizer this package builds.

float16 training scales the loss before backward so small gradients survive; every gradient is
then S times too large. SAM's eps = rho g / ||g|| and every direction built here are unchanged by a
common factor S, so the SAM family works on scaled gradients and unscales only the final direction
(before clipping), through the scaler, which also skips the step when a gradient is inf or nan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gsam_repro.optim.base import SharpnessAware


def scaled_step(
    optimizer: torch.optim.Optimizer,
    closure: Callable[[], Any],
    grad_scaler: torch.amp.GradScaler,
) -> Any:
    """One step with a GradScaler, then `grad_scaler.update()`; returns the loss at w.

    `closure` runs forward (under autocast), calls `grad_scaler.scale(loss).backward()` and
    returns the unscaled loss. Plain optimizers step through `grad_scaler.step`; the SAM family
    runs both passes and hands the final direction to the scaler the same way."""
    if isinstance(optimizer, SharpnessAware):
        loss = optimizer.step(closure, grad_scaler=grad_scaler)
    else:
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure()
        grad_scaler.step(optimizer)
    grad_scaler.update()
    return loss
