"""One training run: a RunConfig in, one run directory out.

`run(config, out_dir) -> summary` is the whole interface sweeps use; `load_config` and
`config_from_dict` build the config. Importing this package does not import torch.
"""

from __future__ import annotations

import os
import sys

from gsam_repro.train.config import RunConfig, config_from_dict, load_config, run_id

__all__ = ["RunConfig", "config_from_dict", "load_config", "passive_cpu_threads", "run",
           "run_id"]


def passive_cpu_threads() -> None:
    """Let idle OpenMP threads sleep instead of spin (OMP_WAIT_POLICY=PASSIVE) unless the user
    chose otherwise. On a CPU shared with other work, spinning threads wait on descheduled ones
    and small operations get many times slower (measured here: a 128-image small_cnn forward and
    backward on 2 threads, 720 ms spinning vs 116 ms passive). Only takes effect before torch is
    imported, so the command-line entry points call it first."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run(config: RunConfig, out_dir: str | os.PathLike) -> dict:
    """Train `config` into `out_dir`; returns the summary (see gsam_repro.train.loop.run)."""
    from gsam_repro.train.loop import run as run_loop

    return run_loop(config, out_dir)
