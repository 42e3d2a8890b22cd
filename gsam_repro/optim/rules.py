"""The optimizers' own argument rules that a run config can be checked against before any
torch import: the adaptive modes and the radius range. The optimizers raise these ValueErrors
when built; `train/config.py` calls the same functions to name the config key at load time (and
so does `sweep plan`, per run), so each rule is written once."""

from __future__ import annotations

from typing import Any

ADAPTIVE_MODES = (False, "paper", "asam")


def check_adaptive(adaptive: Any) -> None:
    """Raise ValueError unless `adaptive` is one of ADAPTIVE_MODES (None means False)."""
    if adaptive is None:
        return
    if not any(adaptive is mode or (isinstance(mode, str) and adaptive == mode)
               for mode in ADAPTIVE_MODES):
        raise ValueError(f"adaptive must be False, 'paper' or 'asam', got {adaptive!r}")


def check_rho_range(rho_max: float | None, rho_min: float | None,
                    rho_name: str = "rho_max") -> None:
    """Raise ValueError for a negative radius or rho_min above the radius (`rho_name`); None
    means "not given" and passes."""
    if rho_max is not None and rho_max < 0:
        raise ValueError(f"{rho_name} must be >= 0, got {rho_max}")
    if rho_min is not None and rho_min < 0:
        raise ValueError(f"rho_min must be >= 0, got {rho_min}")
    if rho_max is not None and rho_min is not None and rho_min > rho_max:
        raise ValueError(f"rho_min ({rho_min}) must not be larger than {rho_name} ({rho_max})")
