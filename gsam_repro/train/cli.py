"""`gsam-repro train CONFIG.yaml --out DIR [key=value ...]`: one run into one directory."""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="run config YAML (see docs/training.md)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. optimizer.rho_max=0.05 schedule.epochs=2")
    # nargs="+" lets overrides follow --out DIR too (argparse stops positionals at an option).
    parser.add_argument("--out", required=True, nargs="+", metavar=("DIR", "key=value"),
                        help="run directory: created, resumed from its checkpoint, or left as it "
                        "is when finished")
    parser.add_argument("--show", action="store_true",
                        help="print the resolved config and its run id, then stop")


def run(args: argparse.Namespace) -> int:
    from gsam_repro.train import passive_cpu_threads
    from gsam_repro.train.config import load_config, run_id

    passive_cpu_threads()

    out_dir, *late_overrides = args.out
    config = load_config(args.config, [*args.overrides, *late_overrides])
    if args.show:
        import yaml

        print(f"# run_id: {run_id(config)}")
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    from gsam_repro.train import run as train_run

    summary = train_run(config, out_dir)
    if int(os.environ.get("RANK", "0")) != 0:  # one line per run, not per data-parallel process
        return 0
    figures = " ".join(
        f"{key} {summary[key]:.4g}" for key in ("test_acc", "test_loss", "surrogate_gap",
                                               "hessian_max_eig", "wall_s")
        if isinstance(summary.get(key), (int, float))
    )
    print(f"{summary['status']}: run {summary['run_id']} in {out_dir}: {figures}",
          file=sys.stdout)
    return 0
