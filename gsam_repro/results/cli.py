"""`gsam-repro gather SWEEP_DIR`: the sweep's run directories into runs.parquet and
history.parquet (incremental: unchanged runs are not read again)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (holds runs/)")
    parser.add_argument("--full", action="store_true",
                        help="read every run directory again instead of reusing the last gather")


def run(args: argparse.Namespace) -> int:
    from gsam_repro.results.gather import GatherWarning, gather
    from gsam_repro.sweep.store import recorded_job_states  # the command wires the layers

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GatherWarning)
        result = gather(args.sweep_dir, full=args.full, job_states=recorded_job_states)
    for warning in caught:
        if issubclass(warning.category, GatherWarning):
            print(f"gsam-repro gather: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    what = "wrote" if result.written else "up to date:"
    print(f"{what} {result.runs_path} ({result.runs} runs) and {result.history_path} "
          f"({result.epochs} epochs); {result.read} run directories read, {result.reused} "
          f"unchanged")
    return 0
