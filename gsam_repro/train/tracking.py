"""Experiment trackers for one run: TensorBoard (`train.tensorboard: true`) and the user's own
loggers (`train.loggers: ["module:factory", ...]`, e.g. Weights & Biases, docs/training.md).

A logger is any object with `log_step(step, scalars)`, `log_epoch(epoch, row)` and
`close(summary)`; a factory is called as `factory(config, run_dir)`. The trainer makes one
`Trackers` per run (rank 0 only) and calls it from its loop; with nothing enabled it does
nothing and costs nothing. Per-step scalars are read from the device (`float()`), so logging
waits on the GPU once a step: that is the price of per-step curves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from gsam_repro.errors import UsageError

# optimizer.stats key -> per-step TensorBoard tag
STEP_STATS = {"f": "step/f", "f_p": "step/f_p", "h": "step/h", "rho": "step/rho_t",
              "grad_norm": "step/grad_norm", "grad_p_norm": "step/grad_p_norm", "cos": "step/cos"}
TENSORBOARD_MISSING = ("train.tensorboard: true needs the tensorboard package, which is not "
                       "installed: pip install 'gsam-repro[tensorboard]' (or pip install "
                       "tensorboard), or set train.tensorboard=false")


class RunLogger(Protocol):
    """What a logger provides (a factory's return value)."""

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def log_epoch(self, epoch: int, row: Mapping[str, Any]) -> None: ...

    def close(self, summary: Mapping[str, Any] | None) -> None: ...


def numbers(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a metrics row or summary (bools and text left out)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def require_tensorboard() -> type:
    """torch's SummaryWriter, or a UsageError saying how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        raise UsageError(TENSORBOARD_MISSING) from None
    return SummaryWriter


class TensorBoardLogger:
    """Event files in the run directory: `step/*` every step, `epoch/*` every epoch, `final/*`
    from the summary (the Hessian eigenvalue among them)."""

    def __init__(self, run_dir: Path):
        self.writer = require_tensorboard()(log_dir=str(run_dir))

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def log_epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        for key, value in numbers(row).items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self.writer.flush()

    def close(self, summary: Mapping[str, Any] | None) -> None:
        if summary:
            epochs = int(summary.get("epochs_completed") or 0)
            for key, value in numbers(summary).items():
                self.writer.add_scalar(f"final/{key}", value, epochs)
        self.writer.close()


def load_factory(path: str) -> Any:
    """The callable `module:attr` or `file.py:attr` names (as optimizers are named)."""
    from gsam_repro.optim.registry import _import_module_or_file

    module_name, _, attribute = path.rpartition(":")
    try:
        obj = _import_module_or_file(module_name, path)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ValueError, AttributeError) as err:
        raise UsageError(f"train.loggers: cannot load {path!r}: {err}") from None
    if not callable(obj):
        raise UsageError(f"train.loggers: {path!r} is not a class or function")
    return obj


class Trackers:
    """Every logger of one run; each call goes to all of them."""

    def __init__(self, loggers: list[RunLogger]):
        self.loggers = loggers

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def step(self, step: int, loss: torch.Tensor, lr: float, stats: Mapping[str, Any]) -> None:
        """One optimizer step: the loss at w, the lr it used, and the optimizer's stats."""
        if not self.loggers:
            return
        scalars = {"step/loss": float(loss), "step/lr": float(lr)}
        for key, tag in STEP_STATS.items():
            if key in stats:
                scalars[tag] = float(stats[key])
        for logger in self.loggers:
            logger.log_step(step, scalars)

    def epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_epoch(epoch, row)

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        for logger in self.loggers:
            logger.close(summary)


def open_trackers(config: Any, run_dir: Path, main: bool = True) -> Trackers:
    """The loggers `config.train` asks for (none on processes other than rank 0)."""
    if not main:
        return Trackers([])
    loggers: list[RunLogger] = []
    if config.train.tensorboard:
        loggers.append(TensorBoardLogger(run_dir))
    for path in config.train.loggers:
        loggers.append(load_factory(path)(config, run_dir))
    return Trackers(loggers)
