"""`gsam-repro demo`: the main job. Until experiments/quick.yaml lands, it says so."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("gsam-repro demo: the main job (experiments/quick.yaml) is coming soon.")
    print("Meanwhile: `make test` runs the test suite.")
    return 0
