"""Command-line entry point (being built)."""

from __future__ import annotations

import argparse

from gsam_repro.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs="*")


def run(args: argparse.Namespace) -> int:
    raise UsageError("this command is not built yet")
