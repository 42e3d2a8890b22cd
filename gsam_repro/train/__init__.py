"""One training run: a RunConfig in, one run directory out.

`run(config, out_dir) -> summary` is the whole interface sweeps use; `load_config` and
`config_from_dict` build the config. Importing this package does not import torch.
"""

from __future__ import annotations

import os

from gsam_repro.train.config import RunConfig, config_from_dict, load_config, run_id

__all__ = ["RunConfig", "config_from_dict", "load_config", "run", "run_id"]


def run(config: RunConfig, out_dir: str | os.PathLike) -> dict:
    """Train `config` into `out_dir`; returns the summary (see gsam_repro.train.loop.run)."""
    from gsam_repro.train.loop import run as run_loop

    return run_loop(config, out_dir)
