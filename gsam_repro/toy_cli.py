"""`gsam-repro toy [--out DIR]`: the 2-D illustration (SGD and SAM end in the sharp minimum,
GSAM in the flat one), drawn with the package's real optimizers in a few seconds."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", default="results/toy",
                        help="output folder (default results/toy)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps (default 200)")
    parser.add_argument("--no-basins", action="store_true",
                        help="skip the basin map (a grid of starts, each classified by where "
                        "each optimizer ends; a few seconds)")


def run(args: argparse.Namespace) -> int:
    import torch

    from gsam_repro import toy
    from gsam_repro.errors import UsageError

    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    torch.set_num_threads(1)
    steps = args.steps or toy.STEPS
    results = toy.run_all(steps=steps)
    basins = None if args.no_basins else toy.basin_map(steps=steps)
    files = toy.write_outputs(results, args.out, basins)
    print("Illustrative 2-D loss (ours, not the paper's function): start "
          f"{toy.START}, lr {toy.LR}, rho {toy.RHO}, GSAM alpha {toy.ALPHA}")
    print(toy.markdown_table(results))
    if basins is not None:
        print("Basin map: " + toy.shares_text(basins.shares()))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
