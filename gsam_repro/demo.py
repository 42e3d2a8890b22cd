"""`gsam-repro demo`: the main job. Runs experiments/quick.yaml through the real sweep engine
(local processes), gathers the parquet files, renders the report, draws the toy example, and
prints the table and where everything went. A second run redoes nothing that finished."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gsam_repro.errors import UsageError

QUICK_SPEC = Path(__file__).resolve().parents[1] / "experiments" / "quick.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, default=QUICK_SPEC,
                        help="the sweep spec to run (default: experiments/quick.yaml)")
    parser.add_argument("--out", type=Path, default=Path("runs/quick"),
                        help="sweep directory (default: runs/quick; results/quick holds the "
                        "committed copy)")
    parser.add_argument("--profile", default=None, help="a profile of the spec, e.g. smoke")
    parser.add_argument("--max-parallel", type=int, default=None,
                        help="runs at once (default: cores / threads per run)")


def _step(title: str, argv: list[str]) -> None:
    from gsam_repro.cli import main

    print(f"\n== {title}: gsam-repro {' '.join(argv)}", flush=True)
    code = main(argv)
    if code != 0:
        raise UsageError(f"step '{title}' failed (exit code {code}); see the messages above")


def run(args: argparse.Namespace) -> int:
    if not args.spec.is_file():
        raise UsageError(f"{args.spec}: no such spec (the demo needs the repo's experiments/)")
    start = time.perf_counter()
    out = args.out
    sweep_argv = ["sweep", "run", str(args.spec), "--out", str(out)]
    if args.profile:
        sweep_argv += ["--profile", args.profile]
    if args.max_parallel:
        sweep_argv += ["--max-parallel", str(args.max_parallel)]
    _step("toy example", ["toy", "--out", str(out / "toy")])
    _step("runs", sweep_argv)
    _step("gather", ["gather", str(out)])
    _step("report", ["report", str(out)])
    minutes = (time.perf_counter() - start) / 60
    print(f"\nThe main job finished in {minutes:.1f} min.", file=sys.stderr)
    print(f"  runs:    {out / 'runs'}")
    print(f"  parquet: {out / 'runs.parquet'}, {out / 'history.parquet'}")
    print(f"  report:  {out / 'report'} (Markdown, LaTeX, CSV tables; PNG and PDF figures)")
    print(f"  toy:     {out / 'toy'}")
    return 0
