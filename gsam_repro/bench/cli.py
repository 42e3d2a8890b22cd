"""`gsam-repro bench NAME`: benchmarks that print figures and write JSON under results/benchmarks/.

Each benchmark is a module in this package with `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "optim": ("gsam_repro.bench.optim", "optimizer step cost and memory: SGD, SAM, GSAM, weighted"),
    "train": ("gsam_repro.bench.train", "training throughput and data-wait fraction"),
    "sweep": ("gsam_repro.bench.sweep", "spec expansion, status and gather speed"),
    "report": ("gsam_repro.report.bench", "report time against sweep size: tables, and figures"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        bench_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(bench_parser)
        bench_parser.set_defaults(_bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    return args._bench_run(args)
